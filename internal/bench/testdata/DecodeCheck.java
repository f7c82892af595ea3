// DecodeCheck runs the peers' shared ClickDecoder (peers/common) over records
// given on stdin, one per line in base64, and prints for each the rejection
// reason ("none" when accepted), the URL in base64 and the event time, the
// record timestamp being 1. TestPeerDecoderMatchesClickagg compares the
// output with clickagg's decoder. Launched as a source file with a peer's
// class path (its jar holds the decoder):
// java -cp 'peers/flink/target/lib/*:peers/flink/target/*.jar' DecodeCheck.java
import dev.clickagg.peers.Click;
import dev.clickagg.peers.ClickDecoder;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Base64;

public class DecodeCheck {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.US_ASCII));
        StringBuilder out = new StringBuilder();
        for (String line; (line = in.readLine()) != null; ) {
            Click c = ClickDecoder.decode(Base64.getDecoder().decode(line), 1);
            if (c.reason != null) {
                out.append(c.reason).append(" - 0\n");
            } else {
                out.append("none ").append(Base64.getEncoder().encodeToString(c.url.getBytes(StandardCharsets.UTF_8)))
                        .append(' ').append(c.ts).append('\n');
            }
        }
        System.out.print(out);
    }
}
