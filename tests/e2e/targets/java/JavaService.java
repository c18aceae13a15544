// e2e target: a Java 17 HTTP service on the JDK's com.sun.net.httpserver,
// whose dispatcher thread runs the handlers (an epoll_wait loop). /sleep calls
// Thread.sleep(250) in loadReport, /cpu spins 200 ms in crunchNumbers, /pool
// queues 6 x 300 ms renderThumbnail jobs on a fixed pool of 2, /ok answers at
// once; before serving, the main thread runs the hot paths until HotSpot
// compiles them. Each slow step
// times itself and prints "TRUTH what ms"; "PORT n" once listening.
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

public class JavaService {
    static void loadReport(long ms) throws InterruptedException {
        Thread.sleep(ms);   // the culprit: blocks the dispatcher thread
    }

    static long crunchNumbers(long ms) {
        long deadline = System.nanoTime() + ms * 1_000_000L, acc = 0, n = 0;
        while (System.nanoTime() < deadline) {
            for (int i = 0; i < 10000; i++) {
                n++;
                acc = (acc * 31 + n * n) % 1000003;
            }
        }
        return acc;
    }

    static void renderThumbnail() {
        try {
            Thread.sleep(300);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    static void reply(HttpExchange ex, String body) throws IOException {
        byte[] b = body.getBytes();
        ex.sendResponseHeaders(200, b.length);
        try (OutputStream o = ex.getResponseBody()) {
            o.write(b);
        }
    }

    static void truth(String what, long t0) {
        System.out.printf("TRUTH %s %.3f%n", what, (System.nanoTime() - t0) / 1e6);
        System.out.flush();
    }

    // What a service's warm-up traffic does: HotSpot compiles the hot paths.
    // On the main thread, before the server's dispatcher starts.
    static void warmUp() throws InterruptedException {
        for (int i = 0; i < 20000; i++)
            loadReport(0);
        for (int i = 0; i < 300; i++)
            crunchNumbers(0);
    }

    public static void main(String[] args) throws Exception {
        warmUp();
        ExecutorService pool = Executors.newFixedThreadPool(2);
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 64);
        server.createContext("/ok", ex -> reply(ex, "ok"));
        server.createContext("/sleep", ex -> {
            long t0 = System.nanoTime();
            try {
                loadReport(250);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            truth("sleep", t0);
            reply(ex, "slept");
        });
        server.createContext("/cpu", ex -> {
            long t0 = System.nanoTime();
            long r = crunchNumbers(200);
            truth("cpu", t0);
            reply(ex, "crunched " + r);
        });
        server.createContext("/pool", ex -> {
            long t0 = System.nanoTime();
            CountDownLatch done = new CountDownLatch(6);
            for (int i = 0; i < 6; i++)
                pool.submit(() -> {
                    renderThumbnail();
                    done.countDown();
                });
            reply(ex, "queued");
            Thread waiter = new Thread(() -> {
                try {
                    done.await();
                } catch (InterruptedException e) {
                    return;
                }
                truth("pool", t0);
            }, "pool-waiter");
            waiter.start();
        });
        server.createContext("/quit", ex -> {
            reply(ex, "bye");
            server.stop(0);
            pool.shutdown();
        });
        server.start();
        System.out.println("PORT " + server.getAddress().getPort());
        System.out.flush();
    }
}
