package dev.clickagg.peers.kstreams;

import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serializer;

/**
 * Decodes a record value into a {@link Click}; never throws: a bad record
 * becomes a Click with a reason, which the topology counts and drops. One
 * instance serves every stream thread, so each thread has its own decoder.
 */
final class ClickDeserializer implements Deserializer<Click> {
    private final ThreadLocal<ClickDecoder> decoder = ThreadLocal.withInitial(ClickDecoder::new);

    /** A serde for the source only: clicks are never written back to Kafka. */
    static Serde<Click> serde() {
        ClickDeserializer d = new ClickDeserializer();
        Serializer<Click> never = (topic, click) -> {
            throw new UnsupportedOperationException("clicks are only read");
        };
        return new Serde<>() {
            @Override
            public Serializer<Click> serializer() {
                return never;
            }

            @Override
            public Deserializer<Click> deserializer() {
                return d;
            }
        };
    }

    @Override
    public Click deserialize(String topic, byte[] data) {
        Click c = new Click();
        decoder.get().decode(data, c);
        return c;
    }
}
