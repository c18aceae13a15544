# config.ru - a Rack app for puma (test_real_puma.py): a slow step that sleeps, one that
# spins, a fast route, and /quit; it prints its own timings as TRUTH lines, and Ruby's
# own backtrace of the first sleep as CALLER lines.
require_relative "caller_truth"

def load_report
  $told ||= print_backtrace_in_sleep(Thread.current, "load_report")
  sleep 0.25
  "report"
end

def crunch_numbers
  t = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 0.2
  acc = 0
  acc = (acc * 31 + 7) % 1000003 while Process.clock_gettime(Process::CLOCK_MONOTONIC) < t
  acc.to_s
end

def timed(name)
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  body = yield
  $stdout.puts format("TRUTH %s %.3f", name, (Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0) * 1000)
  $stdout.flush
  body
end

run lambda { |env|
  case env["PATH_INFO"]
  when "/sleep"
    [200, {"content-type" => "text/plain"}, [timed("sleep") { load_report }]]
  when "/cpu"
    [200, {"content-type" => "text/plain"}, [timed("cpu") { crunch_numbers }]]
  when "/quit"
    # puma stops gracefully on INT, after this answer is sent.
    Thread.new { sleep 0.2; Process.kill("INT", Process.pid) }
    [200, {"content-type" => "text/plain"}, ["bye"]]
  else
    [200, {"content-type" => "text/plain"}, ["ok"]]
  end
}
