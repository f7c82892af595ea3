package dev.clickagg.peers.kstreams;

import org.apache.kafka.common.serialization.Deserializer;

/**
 * Decodes a record value into a {@link Click}; never throws: a bad record
 * becomes a Click with a reason, which the topology counts and drops. One
 * instance serves every stream thread, so each thread has its own decoder.
 */
final class ClickDeserializer implements Deserializer<Click> {
    private final ThreadLocal<ClickDecoder> decoder = ThreadLocal.withInitial(ClickDecoder::new);

    @Override
    public Click deserialize(String topic, byte[] data) {
        Click c = new Click();
        decoder.get().decode(data, c);
        return c;
    }
}
