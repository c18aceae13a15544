// JavaCalls.java - a call-heavy Java workload for bench/run.py: what HotSpot's
// -XX:+PreserveFramePointer (which `stalltrace run` asks for) costs compiled code.
// usage: java JavaCalls N; prints "calls_per_us cpu_ms sink pid" for N rounds after a warm-up.
import java.lang.management.ManagementFactory;

public class JavaCalls {
    interface Shape { long area(long x); }
    static final class Square implements Shape { public long area(long x) { return x * x; } }
    static final class Tri implements Shape { public long area(long x) { return x * (x + 1) / 2; } }

    static long fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

    static long round(Shape[] shapes) {
        long acc = fib(24);
        for (int i = 0; i < 200_000; i++)
            acc += shapes[i & 1].area(i);
        return acc;
    }

    public static void main(String[] args) {
        int n = Integer.parseInt(args[0]);
        Shape[] shapes = {new Square(), new Tri()};
        long sink = 0;
        for (int i = 0; i < 50; i++)
            sink += round(shapes);
        var bean = ManagementFactory.getThreadMXBean();
        long cpu0 = bean.getCurrentThreadCpuTime(), t0 = System.nanoTime();
        for (int i = 0; i < n; i++)
            sink += round(shapes);
        long wall = System.nanoTime() - t0, cpu = bean.getCurrentThreadCpuTime() - cpu0;
        // fib(24) is 75,024 calls, plus 200,000 interface calls a round.
        double calls = (double) n * (75_024 + 200_000);
        System.out.printf("%.3f %.1f %d %d%n", calls / (wall / 1e3), cpu / 1e6, sink & 1,
                          ProcessHandle.current().pid());
    }
}
