ExUnit.start()

defmodule Headcount.TestHelpers do
  @moduledoc false

  # Polls `fun` until it returns true, for up to `ms` milliseconds.
  def eventually(fun, ms \\ 10_000) do
    deadline = System.monotonic_time(:millisecond) + ms
    poll(fun, deadline)
  end

  defp poll(fun, deadline) do
    cond do
      fun.() -> :ok
      System.monotonic_time(:millisecond) > deadline -> raise "timed out waiting for #{inspect(fun)}"
      true -> Process.sleep(5) && poll(fun, deadline)
    end
  end

  # A process that tracks itself in `topics` and then waits to be killed.
  def tracked(server, topics) do
    parent = self()

    pid =
      spawn(fn ->
        for t <- topics, do: :ok = Headcount.track(server, t)
        send(parent, {:tracked, self()})
        Process.sleep(:infinity)
      end)

    receive do
      {:tracked, ^pid} -> pid
    after
      5_000 -> raise "track timed out"
    end
  end
end
