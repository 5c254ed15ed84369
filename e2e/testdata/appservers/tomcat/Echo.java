// The conformance echo app as one servlet for Tomcat 10 (Jakarta Servlet
// 6). The test compiles it with javac against Tomcat's servlet API and runs
// catalina from a temporary CATALINA_BASE (server.xml, web.xml beside this
// file). Servlet 4+ exposes request trailers (the connector must allow
// their names: allowedTrailerHeaders) and can send response trailers.
// WebSocket is left out: Tomcat's needs a JSR 356 endpoint and annotation
// scanning, more than a one-file servlet.
import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.Collections;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.Map;

public class Echo extends HttpServlet {
    static final String NAME = "tomcat";
    static final String FIXED = "0123456789abcdef".repeat(64);

    static String json(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20 || c > 0x7e) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    static String sha256(byte[] b) throws IOException {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(b));
        } catch (Exception e) {
            throw new IOException(e);
        }
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    @Override
    protected void service(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        String path = req.getRequestURI();
        switch (path) {
            case "/healthz" -> {
                resp.setContentType("text/plain");
                resp.getWriter().write("ok");
            }
            case "/echo" -> echo(req, resp, 0);
            case "/slow" -> echo(req, resp, 300);
            case "/fixed" -> {
                byte[] b = FIXED.getBytes(StandardCharsets.US_ASCII);
                resp.setContentType("text/plain");
                resp.setContentLength(b.length);
                resp.setHeader("X-Backend", NAME);
                resp.addHeader("Set-Cookie", "a=1; Path=/");
                resp.addHeader("Set-Cookie", "b=2; Path=/");
                resp.getOutputStream().write(b);
            }
            case "/empty" -> {
                resp.setStatus(204);
                resp.setHeader("X-Backend", NAME);
                resp.setHeader("X-Empty", "1");
            }
            case "/notmod" -> {
                resp.setHeader("ETag", "\"v1\"");
                resp.setHeader("X-Backend", NAME);
                if ("\"v1\"".equals(req.getHeader("If-None-Match"))) {
                    resp.setStatus(304);
                    return;
                }
                resp.setContentType("text/plain");
                resp.setContentLength(6);
                resp.getOutputStream().write("fresh\n".getBytes(StandardCharsets.US_ASCII));
            }
            case "/trailers" -> {
                resp.setContentType("text/plain");
                resp.setHeader("X-Backend", NAME);
                StringBuilder all = new StringBuilder();
                for (int i = 0; i < 3; i++) all.append("chunk-").append(i).append('\n');
                String sum = sha256(all.toString().getBytes(StandardCharsets.US_ASCII));
                resp.setTrailerFields(() -> Map.of("X-Checksum", sum));
                OutputStream out = resp.getOutputStream();
                for (int i = 0; i < 3; i++) {
                    out.write(("chunk-" + i + "\n").getBytes(StandardCharsets.US_ASCII));
                    out.flush();
                    sleep(20);
                }
            }
            case "/stream" -> {
                resp.setContentType("text/event-stream");
                resp.setHeader("Cache-Control", "no-cache");
                OutputStream out = resp.getOutputStream();
                for (int i = 0; i < 4; i++) {
                    if (i > 0) sleep(250);
                    out.write(("data: event " + i + "\n\n").getBytes(StandardCharsets.US_ASCII));
                    out.flush();
                }
            }
            default -> {
                resp.setStatus(404);
                resp.setContentType("text/plain");
                resp.setHeader("X-Backend", NAME);
                resp.getWriter().write("not found\n");
            }
        }
    }

    void echo(HttpServletRequest req, HttpServletResponse resp, long delay) throws IOException {
        if (delay > 0) sleep(delay);
        MessageDigest md;
        try {
            md = MessageDigest.getInstance("SHA-256");
        } catch (Exception e) {
            throw new IOException(e);
        }
        long n = 0;
        byte[] buf = new byte[65536];
        InputStream in = req.getInputStream();
        for (int r; (r = in.read(buf)) > 0; ) {
            md.update(buf, 0, r);
            n += r;
        }
        StringBuilder b = new StringBuilder();
        b.append("{\"server\":").append(json(NAME));
        b.append(",\"method\":").append(json(req.getMethod()));
        String target = req.getRequestURI();
        if (req.getQueryString() != null) target += "?" + req.getQueryString();
        b.append(",\"target\":").append(json(target));
        // Tomcat keeps the headers in arrival order, names as sent.
        b.append(",\"headers\":[");
        boolean first = true;
        for (String name : Collections.list(req.getHeaderNames())) {
            for (String v : Collections.list(req.getHeaders(name))) {
                if (!first) b.append(',');
                first = false;
                b.append('[').append(json(name)).append(',').append(json(v)).append(']');
            }
        }
        b.append("],\"body_len\":").append(n);
        b.append(",\"body_sha256\":").append(json(HexFormat.of().formatHex(md.digest())));
        b.append(",\"trailers\":[");
        first = true;
        if (req.isTrailerFieldsReady()) {
            for (Map.Entry<String, String> e : req.getTrailerFields().entrySet()) {
                if (!first) b.append(',');
                first = false;
                b.append('[').append(json(e.getKey())).append(',').append(json(e.getValue())).append(']');
            }
        }
        b.append("]}");
        byte[] out = b.toString().getBytes(StandardCharsets.UTF_8);
        resp.setContentType("application/json");
        resp.setContentLength(out.length);
        resp.setHeader("X-Backend", NAME);
        resp.getOutputStream().write(out);
    }
}
