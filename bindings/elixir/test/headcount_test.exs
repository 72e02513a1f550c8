defmodule HeadcountTest do
  use ExUnit.Case, async: true
  import Headcount.TestHelpers

  setup context do
    name = Module.concat(__MODULE__, "T#{System.unique_integer([:positive])}")
    if context[:no_server], do: :ok, else: start_supervised!({Headcount, name: name, flush_interval_ms: 20})
    %{hc: name}
  end

  describe "tracking" do
    test "track, count, untrack, untrack_all", %{hc: hc} do
      assert :ok = Headcount.track(hc, "room:1")
      assert {:error, :already_tracked} = Headcount.track(hc, "room:1")
      assert {:error, :already_tracked} = Headcount.track(hc, ["room", ?:, "1"])
      other = tracked(hc, ["room:1", "room:2"])
      assert :ok = Headcount.track(hc, "room:3", pid: other)
      assert Headcount.count(hc, "room:1") == 2
      assert Headcount.count_local(hc, "room:1") == 2
      assert %{count: 2, local: 2, peers_reporting: 0, peers_known: 0} = Headcount.count_info(hc, "room:1")
      assert Headcount.total(hc) == 4
      assert :ok = Headcount.untrack(hc, "room:1")
      assert {:error, :not_tracked} = Headcount.untrack(hc, "room:1")
      assert :ok = Headcount.untrack(hc, "room:2", pid: other)
      assert Headcount.untrack_all(hc, other) == 2
      assert Headcount.untrack_all(hc, other) == 0
      assert Headcount.total(hc) == 0
      assert %{"topics" => _, "peers" => [], "beam" => %{"processes" => 2}} = Headcount.stats(hc)
      assert Headcount.local_addr(hc) == nil
    end

    test "tracked processes that are killed are untracked from every topic", %{hc: hc} do
      topics = for i <- 1..3, do: "room:#{i}"
      pids = for _ <- 1..1000, do: tracked(hc, topics)
      assert Headcount.count(hc, "room:2") == 1000
      Enum.each(pids, &Process.exit(&1, :kill))
      eventually(fn -> Headcount.total(hc) == 0 end)
      assert %{"connections" => 0, "beam" => %{"processes" => 0}} = Headcount.stats(hc)
    end

    test "track of a dead process is :noproc", %{hc: hc} do
      {pid, ref} = spawn_monitor(fn -> :ok end)
      assert_receive {:DOWN, ^ref, _, _, _}
      assert {:error, :noproc} = Headcount.track(hc, "t", pid: pid)
    end
  end

  describe "change feed and top" do
    # Folds {:headcount_changes, ref, _} messages into `seen` until `want`
    # (a map) is part of it.
    defp seen_until(ref, seen, want) do
      if Map.take(seen, Map.keys(want)) == want do
        seen
      else
        receive do
          {:headcount_changes, ^ref, changes} ->
            assert changes != []
            topics = for {t, _, _} <- changes, do: t
            assert length(topics) == length(Enum.uniq(topics))

            seen =
              Enum.reduce(changes, seen, fn {t, c, u}, acc when is_binary(t) and c == u ->
                Map.put(acc, t, c)
              end)

            seen_until(ref, seen, want)
        after
          10_000 -> flunk("not seen: #{inspect(want)}, seen #{inspect(seen)}")
        end
      end
    end

    test "subscribe: messages, prefix, final zero, unsubscribe", %{hc: hc} do
      assert {:ok, ref} = Headcount.subscribe(hc, "room:")
      assert is_reference(ref)
      user = tracked(hc, ["room:1", "lobby"])
      :ok = Headcount.track(hc, "room:1")
      seen = seen_until(ref, %{}, %{"room:1" => 2})
      Process.exit(user, :kill)
      :ok = Headcount.untrack(hc, "room:1")
      seen = seen_until(ref, seen, %{"room:1" => 0})
      refute Map.has_key?(seen, "lobby")
      assert :ok = Headcount.unsubscribe(hc, ref)
      assert :ok = Headcount.unsubscribe(hc, ref)
      :ok = Headcount.track(hc, "room:2")
      refute_receive {:headcount_changes, ^ref, _}, 200
      eventually(fn -> Headcount.stats(hc)["watches"] == 0 end)
    end

    test "subscribe with initial: true", %{hc: hc} do
      {:ok, all} = Headcount.subscribe(hc, "")
      tracked(hc, ["a:1", "a:2", "b"])
      tracked(hc, ["a:1"])
      seen_until(all, %{}, %{"a:1" => 2, "a:2" => 1, "b" => 1})
      {:ok, ref} = Headcount.subscribe(hc, "a:", initial: true)
      assert_receive {:headcount_changes, ^ref, changes}, 10_000
      assert Enum.sort(changes) == [{"a:1", 2, 2}, {"a:2", 1, 1}]
      {:ok, later} = Headcount.subscribe(hc, "a:", initial: false)
      refute_receive {:headcount_changes, ^later, _}, 150
    end

    test "a subscriber that exits ends its subscription", %{hc: hc} do
      parent = self()

      subscribers =
        for _ <- 1..10 do
          spawn(fn ->
            {:ok, _} = Headcount.subscribe(hc, "x")
            send(parent, :subscribed)
            Process.sleep(:infinity)
          end)
        end

      for _ <- subscribers, do: assert_receive(:subscribed, 5_000)
      assert Headcount.stats(hc)["watches"] == 10
      Enum.each(subscribers, &Process.exit(&1, :kill))
      eventually(fn -> Headcount.stats(hc)["watches"] == 0 end)
    end

    test "top against a brute force answer", %{hc: hc} do
      topics = for i <- 1..60, do: Enum.at(["room:", "lobby:", "ro"], rem(i, 3)) <> "#{i}"
      :rand.seed(:exsss, {18, 18, 18})
      for _ <- 1..40, do: tracked(hc, Enum.take_random(topics, 5))

      brute = fn k, prefix ->
        topics
        |> Enum.filter(&String.starts_with?(&1, prefix))
        |> Enum.map(&{&1, Headcount.count(hc, &1)})
        |> Enum.filter(fn {_, c} -> c > 0 end)
        |> Enum.sort_by(fn {t, c} -> {-c, t} end)
        |> Enum.take(k)
      end

      for k <- [0, 1, 5, 100], prefix <- ["", "room:", "ro", "none"] do
        assert Headcount.top(hc, k, prefix: prefix) == brute.(k, prefix)
      end

      assert Headcount.top(hc, 3) == brute.(3, "")
    end

    test "errors", %{hc: hc} do
      assert {:error, :invalid_topic} = Headcount.subscribe(hc, String.duplicate("p", 1025))
      assert_raise ArgumentError, ~r/initial:/, fn -> Headcount.subscribe(hc, "", initial: :yes) end
      assert_raise ArgumentError, ~r/initial:/, fn -> Headcount.subscribe(hc, "", inital: true) end
      assert_raise ArgumentError, fn -> Headcount.subscribe(hc, 42) end
      assert_raise ArgumentError, fn -> Headcount.unsubscribe(hc, make_ref()) end
      assert_raise ArgumentError, ~r/prefix:/, fn -> Headcount.top(hc, 1, prefx: "") end
      assert_raise FunctionClauseError, fn -> Headcount.top(hc, -1) end

      assert %Headcount.Error{reason: :invalid_topic} =
               catch_error(Headcount.top(hc, 1, prefix: String.duplicate("p", 1025)))

      assert {:error, :not_running} = Headcount.subscribe(NoSuchHeadcount, "")
      assert {:error, :not_running} = Headcount.unsubscribe(NoSuchHeadcount, make_ref())
      assert %Headcount.Error{reason: :not_running} = catch_error(Headcount.top(NoSuchHeadcount, 1))
      {:ok, ref} = Headcount.subscribe(hc, "")
      {:ok, handle} = Headcount.Server.handle(hc)
      :ok = :headcount.stop(handle)
      assert {:error, :closed} = Headcount.subscribe(hc, "")
      assert {:error, :closed} = Headcount.unsubscribe(hc, ref)
      assert %Headcount.Error{reason: :closed} = catch_error(Headcount.top(hc, 1))
    end
  end

  describe "errors: value functions raise, :ok functions return {:error, reason}" do
    test "invalid topic", %{hc: hc} do
      assert {:error, :invalid_topic} = Headcount.track(hc, "")
      assert {:error, :invalid_topic} = Headcount.untrack(hc, String.duplicate("x", 1025))
      assert_raise Headcount.Error, ~r/empty or longer/, fn -> Headcount.count(hc, "") end
      assert %Headcount.Error{reason: :invalid_topic} = catch_error(Headcount.count_info(hc, ""))
    end

    test "a stopped node", %{hc: hc} do
      {:ok, handle} = Headcount.Server.handle(hc)
      :ok = :headcount.stop(handle)
      assert {:error, :closed} = Headcount.track(hc, "t")
      assert {:error, :closed} = Headcount.untrack(hc, "t")
      assert {:error, :closed} = Headcount.add_peer(hc, "127.0.0.1:1")

      for f <- [
            &Headcount.count(&1, "t"),
            &Headcount.count_info(&1, "t"),
            &Headcount.total/1,
            &Headcount.stats/1,
            &Headcount.untrack_all(&1, self()),
            &Headcount.local_addr/1
          ] do
        assert %Headcount.Error{reason: :closed} = catch_error(f.(hc))
      end
    end

    @tag :no_server
    test "no server under that name" do
      assert {:error, :not_running} = Headcount.track(NoSuchHeadcount, "t")
      assert {:error, :not_running} = Headcount.untrack(NoSuchHeadcount, "t")
      assert_raise Headcount.Error, ~r/no Headcount server/, fn -> Headcount.count(NoSuchHeadcount, "t") end
    end

    test "wrong types and options raise ArgumentError", %{hc: hc} do
      assert_raise ArgumentError, fn -> Headcount.track(hc, :not_iodata) end
      assert_raise ArgumentError, fn -> Headcount.count(hc, 42) end
      assert_raise ArgumentError, ~r/pid:/, fn -> Headcount.track(hc, "t", pid: :nope) end
      assert_raise ArgumentError, ~r/distinct users/, fn -> Headcount.track(hc, "t", user: "u42") end
      assert_raise ArgumentError, fn -> Headcount.count("not an atom", "t") end
      assert_raise FunctionClauseError, fn -> Headcount.untrack_all(hc, :not_a_pid) end
    end
  end

  describe "keyword config" do
    @describetag :no_server

    test "bad keys and values fail the start with an error that names them" do
      Process.flag(:trap_exit, true)

      for {opts, message} <- [
            {[colour: :blue], ~r/colour.*unknown key/},
            {[flush_interval_ms: 0], ~r/flush_interval_ms.*out of range/},
            {[flush_interval_ms: "soon"], ~r/flush_interval_ms/},
            {[node_name: {:a, :b}], ~r/invalid value for node_name/},
            {[seeds: ["127.0.0.1:1", 7]], ~r/invalid value for seeds/},
            {[node_name: "a", node_name: "b"], ~r/node_name is given twice/},
            {[listen: "127.0.0.1:0"], ~r/secret/},
            {[discovery: :mdns], ~r/discovery/},
            {[discovery: :erlang], ~r/needs listen/}
          ] do
        assert {:error, %Headcount.Error{reason: :config, message: m}} =
                 Headcount.start_link([name: BadConfig] ++ opts)

        assert m =~ message
        refute Process.whereis(BadConfig)
      end

      assert {:error, %Headcount.Error{message: m}} = Headcount.start_link(flush_interval_ms: 5)
      assert m =~ "name:"
      assert_raise ArgumentError, fn -> Headcount.start_link(%{name: X}) end
    end

    test "good keyword config reaches the library" do
      name = GoodConfig

      start_supervised!(
        {Headcount, name: name, node_name: "n-1", max_topic_len: 8, gc_after_ms: 0, seeds: [], cluster: :prod}
      )

      assert %{"node" => "n-1"} = Headcount.stats(name)
      assert {:error, :invalid_topic} = Headcount.track(name, "123456789")
      assert :ok = Headcount.track(name, "12345678")
    end

    test "a bad config fails a supervisor's start" do
      Process.flag(:trap_exit, true)

      assert {:error, {:shutdown, {:failed_to_start_child, SupBad, %Headcount.Error{reason: :config}}}} =
               Supervisor.start_link([{Headcount, name: SupBad, colour: 1}], strategy: :one_for_one)
    end
  end

  describe "supervision" do
    @describetag :no_server

    test "start, crash, restart: the restarted server adopts the running node" do
      {:ok, sup} =
        Supervisor.start_link([{Headcount, name: SupHC, flush_interval_ms: 20}], strategy: :one_for_one)

      user = tracked(SupHC, ["room:1", "room:2"])
      {:ok, handle} = Headcount.Server.handle(SupHC)
      old = Process.whereis(SupHC)
      Process.exit(old, :kill)
      eventually(fn -> (pid = Process.whereis(SupHC)) && pid != old end)
      assert Headcount.Server.handle(SupHC) == {:ok, handle}
      assert Headcount.count(SupHC, "room:1") == 1
      assert :ok = Headcount.track(SupHC, "room:1")
      # the monitors made before the crash still work
      Process.exit(user, :kill)
      eventually(fn -> Headcount.count(SupHC, "room:2") == 0 end)
      assert Headcount.count(SupHC, "room:1") == 1

      # a clean shutdown stops the node and unpublishes it
      :ok = Supervisor.stop(sup)
      assert {:error, :closed} = :headcount.track(handle, "x")
      assert {:error, :not_running} = Headcount.track(SupHC, "x")
      assert_raise Headcount.Error, fn -> Headcount.count(SupHC, "room:1") end
    end

    test "a server restarted after a clean stop starts a fresh node" do
      {:ok, sup} = Supervisor.start_link([{Headcount, name: SupHC2}], strategy: :one_for_one)
      :ok = Headcount.track(SupHC2, "r")
      {:ok, h1} = Headcount.Server.handle(SupHC2)
      :ok = Supervisor.terminate_child(sup, SupHC2)
      {:ok, _} = Supervisor.restart_child(sup, SupHC2)
      {:ok, h2} = Headcount.Server.handle(SupHC2)
      assert h1 != h2
      assert Headcount.count(SupHC2, "r") == 0
      Supervisor.stop(sup)
    end
  end
end
