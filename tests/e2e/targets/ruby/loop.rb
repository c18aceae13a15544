# loop.rb - a plain Ruby event loop (IO.select on a pipe) for test_real_puma.py: a
# feeder thread sends a few no-op jobs (so the loop is known as one), then the jobs
# of ARGV ("sleep", "cpu") 0.4 s apart; the loop runs each in a method of its own and
# prints its own timings as TRUTH lines. During the first sleep the feeder prints the
# loop's own backtrace (Thread#backtrace) as CALLER lines: what Ruby says its frames are.
require_relative "caller_truth"

def nap
  sleep 0.2
end

def crunch_numbers
  t = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 0.2
  acc = 0
  acc = (acc * 31 + 7) % 1000003 while Process.clock_gettime(Process::CLOCK_MONOTONIC) < t
  acc
end

jobs = ARGV.empty? ? %w[sleep cpu sleep cpu sleep cpu] : ARGV
rd, wr = IO.pipe
main = Thread.current
Thread.new do
  5.times { sleep 0.05; wr.puts("noop") }
  told = false
  jobs.each do |j|
    sleep 0.4
    wr.puts(j)
    next if told || j != "sleep"
    told = true
    print_backtrace_in_sleep(main, "nap")
  end
  sleep 0.3
  wr.puts("quit")
end

loop do
  next unless IO.select([rd], nil, nil, 1.0)
  job = rd.gets.strip
  break if job == "quit"
  next if job == "noop"
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  job == "sleep" ? nap : crunch_numbers
  $stdout.puts format("TRUTH %s %.3f", job, (Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0) * 1000)
  $stdout.flush
end
