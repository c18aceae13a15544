# caller_truth.rb - ground truth for the Ruby frames stalltrace reads: prints, once, the
# backtrace Ruby itself gives for a thread while it sleeps in a given method, as CALLER lines.
def print_backtrace_in_sleep(thread, method)
  Thread.new do
    bt = []
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 1.0
    while Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline
      bt = thread.backtrace || []
      break if bt.length > 1 && bt[0].end_with?("in `sleep'") && bt[1].end_with?("in `#{method}'")
      sleep 0.002
    end
    $stdout.write(bt.map { |l| "CALLER #{l}\n" }.join)
    $stdout.flush
  end
end
