// DecodeCheck runs the Flink peer's ClickDecoder over records given on stdin,
// one per line in base64, and prints for each the rejection reason ("none"
// when accepted), the URL in base64 and the event time, the record
// timestamp being 1. TestFlinkDecoderMatchesClickagg compares the output
// with clickagg's decoder. Launched as a source file:
// java -cp 'peers/flink/target/lib/*:peers/flink/target/*.jar' DecodeCheck.java
import dev.clickagg.flink.ClickDecoder;
import dev.clickagg.flink.UrlClickCounts.Click;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Base64;

public class DecodeCheck {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.US_ASCII));
        StringBuilder out = new StringBuilder();
        for (String line; (line = in.readLine()) != null; ) {
            Click c = new Click();
            String reason = ClickDecoder.decode(Base64.getDecoder().decode(line), 1, c);
            if (reason != null) {
                out.append(reason).append(" - 0\n");
            } else {
                out.append("none ").append(Base64.getEncoder().encodeToString(c.url.getBytes(StandardCharsets.UTF_8)))
                        .append(' ').append(c.ts).append('\n');
            }
        }
        System.out.print(out);
    }
}
