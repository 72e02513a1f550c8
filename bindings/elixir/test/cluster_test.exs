defmodule Headcount.ClusterTest do
  # Two BEAM nodes started with :peer on 127.0.0.1, each running Headcount
  # with discovery: :erlang and no seeds: connecting the Erlang nodes is all
  # it takes for their counts to converge, and a subscriber on one sees
  # the other's users come and go.
  use ExUnit.Case, async: false
  import Headcount.TestHelpers

  @moduletag timeout: 120_000
  @loopback ~c"{127,0,0,1}"

  setup_all do
    # Distribution needs epmd; keep it, and every node, on loopback.
    {_, 0} = System.cmd("epmd", ["-daemon"], env: [{"ERL_EPMD_ADDRESS", "127.0.0.1"}])

    unless Node.alive?() do
      Application.put_env(:kernel, :inet_dist_use_interface, {127, 0, 0, 1})
      {:ok, _} = Node.start(:"headcount_test_#{System.unique_integer([:positive])}@127.0.0.1", :longnames)
    end

    :ok
  end

  defp peer(name) do
    # connect_all false: the peers meet only when the test connects them.
    args =
      [~c"-connect_all", ~c"false", ~c"-kernel", ~c"inet_dist_use_interface", @loopback] ++
        Enum.flat_map(:code.get_path(), &[~c"-pa", &1])

    {:ok, pid, node} = :peer.start_link(%{name: name, host: ~c"127.0.0.1", longnames: true, args: args})
    {:ok, _} = :erpc.call(node, Application, :ensure_all_started, [:headcount])
    {pid, node}
  end

  # Evaluates Elixir code on `node` (funs of this test module do not exist there).
  defp on(node, code, binding) do
    {value, _} = :erpc.call(node, Code, :eval_string, [code, binding])
    value
  end

  defp start_headcount(node) do
    on(
      node,
      """
      parent = self()
      spawn(fn ->
        {:ok, _} = Supervisor.start_link([{Headcount, opts}], strategy: :one_for_one)
        send(parent, :started)
        Process.sleep(:infinity)
      end)
      receive do :started -> :ok after 10_000 -> :timeout end
      """,
      opts: [
        name: ClusterHC,
        listen: "127.0.0.1:0",
        secret: "cluster-test",
        flush_interval_ms: 20,
        down_after_ms: 500,
        discovery: :erlang
      ]
    )
  end

  defp track_users(node, n) do
    on(
      node,
      """
      for _ <- 1..n do
        parent = self()
        pid = spawn(fn -> :ok = Headcount.track(ClusterHC, "room:lobby"); send(parent, :ok); Process.sleep(:infinity) end)
        receive do :ok -> pid end
      end
      """,
      n: n
    )
  end

  defp count(node), do: :erpc.call(node, Headcount, :count, [ClusterHC, "room:lobby"])

  # A process on `node` subscribed to "room:" (initial: true) that forwards
  # each batch to the test process as {:changes, batch}.
  defp subscribe_forwarder(node) do
    on(
      node,
      """
      spawn(fn ->
        {:ok, ref} = Headcount.subscribe(ClusterHC, "room:", initial: true)
        send(parent, :subscribed)
        forward = fn forward ->
          receive do
            {:headcount_changes, ^ref, batch} -> send(parent, {:changes, batch}); forward.(forward)
          end
        end
        forward.(forward)
      end)
      """,
      parent: self()
    )

    assert_receive :subscribed, 10_000
  end

  # Receives forwarded batches until "room:lobby" was last delivered as `want`.
  defp lobby_reaches(want, last \\ nil) do
    if last == want do
      :ok
    else
      receive do
        {:changes, batch} ->
          lobby_reaches(want, Enum.find_value(batch, last, fn {t, c, _} -> t == "room:lobby" && c end))
      after
        10_000 -> flunk("room:lobby was last delivered as #{inspect(last)}, not #{want}")
      end
    end
  end

  test "two nodes discover each other through Erlang distribution and converge" do
    {pa, a} = peer(:"hc_a_#{System.unique_integer([:positive])}")
    {pb, b} = peer(:"hc_b_#{System.unique_integer([:positive])}")
    :ok = start_headcount(a)
    :ok = start_headcount(b)
    users_a = track_users(a, 3)
    _users_b = track_users(b, 2)
    # Not yet connected to each other (each only to this test node): no peers.
    refute b in :erpc.call(a, Node, :list, [])
    Process.sleep(200)
    assert count(a) == 3
    assert %{"peers" => []} = :erpc.call(a, Headcount, :stats, [ClusterHC])
    subscribe_forwarder(a)
    lobby_reaches(3)

    # What libcluster or Node.connect/1 does; discovery does the rest.
    true = :erpc.call(a, Node, :connect, [b])
    eventually(fn -> count(a) == 5 and count(b) == 5 end)
    lobby_reaches(5)
    assert [{"room:lobby", 5}] = :erpc.call(a, Headcount, :top, [ClusterHC, 10, [prefix: "room:"]])
    assert %{"peers" => [_]} = :erpc.call(a, Headcount, :stats, [ClusterHC])
    assert %{local: 3, peers_reporting: 1} = :erpc.call(a, Headcount, :count_info, [ClusterHC, "room:lobby"])

    # deaths on one node reach the other
    for u <- users_a, do: :erpc.call(a, Process, :exit, [u, :kill])
    eventually(fn -> count(a) == 2 and count(b) == 2 end)
    lobby_reaches(2)

    # a node that goes away is dropped by the other
    :peer.stop(pb)
    eventually(fn -> count(a) == 0 end)
    lobby_reaches(0)
    assert [] = :erpc.call(a, Headcount, :top, [ClusterHC, 10, [prefix: "room:"]])
    :peer.stop(pa)
  end
end
