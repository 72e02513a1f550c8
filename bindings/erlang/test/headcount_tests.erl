%% EUnit suite of the headcount Erlang binding.
%%
%%   erl -noshell -pa ebin -eval 'case eunit:test(headcount_tests,[verbose]) of ok -> halt(0); _ -> halt(1) end'
%%
%% Figures (how long a death takes to be counted, call latencies) are
%% printed to the console with a "headcount:" prefix.
-module(headcount_tests).

-include_lib("eunit/include/eunit.hrl").

%% The logger handler callback of the log test.
-export([log/2]).

%% -------------------------------------------------------------------------
%% Helpers

start() ->
    {ok, N} = headcount:start(#{flush_interval_ms => 20}),
    N.

%% A process that waits until told to stop (or is killed).
idle() ->
    spawn(fun() -> receive stop -> ok end end).

%% Runs Fun in a new process, waits for it to finish, returns its result.
in_process(Fun) ->
    Self = self(),
    {Pid, Ref} = spawn_monitor(fun() -> Self ! {self(), Fun()} end),
    receive {Pid, Result} -> receive {'DOWN', Ref, _, _, _} -> Result end
    after 30000 -> error(timeout)
    end.

%% Polls Fun until it returns true; returns the elapsed microseconds, or
%% fails after TimeoutMs.
wait_until(Fun, TimeoutMs) ->
    T0 = erlang:monotonic_time(microsecond),
    Deadline = T0 + TimeoutMs * 1000,
    wait_until(Fun, T0, Deadline).

wait_until(Fun, T0, Deadline) ->
    case Fun() of
        true ->
            erlang:monotonic_time(microsecond) - T0;
        false ->
            case erlang:monotonic_time(microsecond) > Deadline of
                true -> error({timeout_waiting, erlang:fun_info(Fun, name)});
                false -> erlang:yield(), wait_until(Fun, T0, Deadline)
            end
    end.

wait_dead(Pid) ->
    Ref = monitor(process, Pid),
    receive {'DOWN', Ref, _, _, _} -> ok after 10000 -> error({still_alive, Pid}) end.

%% A pid of another (never connected) node: binary_to_term of NEW_PID_EXT.
remote_pid() ->
    Node = <<"other@nohost">>,
    binary_to_term(<<131, 88, 119, (byte_size(Node)), Node/binary, 1:32, 0:32, 1:32>>).

%% The OS threads of this VM (Linux); undefined where /proc is missing.
os_threads() ->
    case file:list_dir("/proc/self/task") of
        {ok, Tasks} -> length(Tasks);
        {error, _} -> undefined
    end.

report(Format, Args) ->
    io:format(user, "~nheadcount: " ++ Format ++ "~n", Args).

%% -------------------------------------------------------------------------
%% start/1

start_config_forms_test() ->
    %% atom, binary and string keys; binary, string, atom and integer values
    {ok, A} = headcount:start(#{node_name => <<"n-a">>, <<"flush_interval_ms">> => 25,
                                "max_topic_len" => "16", gc_after_ms => 0}),
    ?assertMatch(#{<<"node">> := <<"n-a">>}, headcount:stats(A)),
    ?assertEqual({error, invalid_topic}, headcount:track(A, binary:copy(<<"x">>, 17))),
    ?assertEqual(ok, headcount:track(A, binary:copy(<<"x">>, 16))),
    ok = headcount:stop(A),
    {ok, B} = headcount:start(#{node_name => an_atom, cluster => "prod"}),
    ?assertMatch(#{<<"node">> := <<"an_atom">>}, headcount:stats(B)),
    ok = headcount:stop(B),
    {ok, C} = headcount:start(#{}),
    ?assertMatch(#{<<"node">> := <<"node-", _/binary>>}, headcount:stats(C)),
    ok = headcount:stop(C),
    %% a proplist (an Elixir keyword list) works as the map does
    {ok, D} = headcount:start([{node_name, <<"n-d">>}, {"max_topic_len", 8}, {<<"gc_after_ms">>, 0}]),
    ?assertMatch(#{<<"node">> := <<"n-d">>}, headcount:stats(D)),
    ?assertEqual({error, invalid_topic}, headcount:track(D, <<"123456789">>)),
    ok = headcount:stop(D),
    {ok, E} = headcount:start([]),
    ok = headcount:stop(E).

start_seeds_list_reaches_the_library_test() ->
    %% A list of addresses is joined with commas and checked by the
    %% library: the bad one is named in the message.
    {error, {config, Msg}} = headcount:start(#{seeds => [<<"127.0.0.1:7401">>, "nohost"], secret => s}),
    ?assertNotEqual(nomatch, binary:match(Msg, <<"nohost">>)),
    %% A good list passes hc_config_set; without a secret the node as a
    %% whole is refused, by the library.
    {error, {config, Msg2}} = headcount:start(#{seeds => [<<"127.0.0.1:7401">>, "127.0.0.1:7402"]}),
    ?assertNotEqual(nomatch, binary:match(Msg2, <<"secret">>)).

start_errors_test() ->
    ?assertError(badarg, headcount:start(not_a_map)),
    ?assertError(badarg, headcount:start([node_name])),
    ?assertError(badarg, headcount:start([{node_name, <<"a">>} | tail])),
    ?assertError(badarg, headcount:start([{node_name, <<"a">>, extra}])),
    %% one key twice, in any spelling, is refused with its name
    ?assertEqual({error, {config, <<"configuration key node_name is given twice">>}},
                 headcount:start([{node_name, <<"a">>}, {<<"node_name">>, <<"b">>}])),
    ?assertError(badarg, headcount:start(#{1.5 => <<"x">>})),
    ?assertError(badarg, headcount:start(#{node_name => {a, b}})),
    ?assertError(badarg, headcount:start(#{node_name => 1.5})),
    ?assertError(badarg, headcount:start(#{seeds => [a_atom]})),
    ?assertError(badarg, headcount:start(#{node_name => [<<"a">>, 1.5]})),
    {error, {config, M1}} = headcount:start(#{colour => blue}),
    ?assertNotEqual(nomatch, binary:match(M1, <<"colour">>)),
    ?assertMatch({error, {config, _}}, headcount:start(#{flush_interval_ms => 0})),
    ?assertMatch({error, {config, _}}, headcount:start(#{flush_interval_ms => "soon"})),
    ?assertMatch({error, {config, _}}, headcount:start(#{flush_interval_ms => -5})),
    ?assertMatch({error, {config, _}}, headcount:start(#{node_name => <<>>})),
    ?assertMatch({error, {config, _}}, headcount:start(#{listen => "127.0.0.1:0"})), % no secret
    %% A NUL inside a key or value cannot become a C string.
    ?assertEqual({error, {config, <<"node_", 0, "name">>}},
                 headcount:start(#{<<"node_", 0, "name">> => <<"a">>})),
    ?assertEqual({error, {config, <<"node_name">>}}, headcount:start(#{node_name => <<"a", 0>>})),
    %% Non-UTF-8 value.
    ?assertMatch({error, {config, _}}, headcount:start(#{node_name => <<255>>})).

%% -------------------------------------------------------------------------
%% track / untrack

track_untrack_test() ->
    N = start(),
    ?assertEqual(ok, headcount:track(N, <<"room:1">>)),
    ?assertEqual({error, already_tracked}, headcount:track(N, <<"room:1">>)),
    %% iodata names the same topic as its flattened bytes
    ?assertEqual({error, already_tracked}, headcount:track(N, ["room", $:, [<<"1">>]])),
    ?assertEqual({error, already_tracked}, headcount:track(N, "room:1")),
    ?assertEqual(1, headcount:count(N, <<"room:1">>)),
    ?assertEqual(ok, headcount:track(N, <<"room:2">>)),
    ?assertEqual(2, headcount:total(N)),
    ?assertEqual(ok, headcount:untrack(N, "room:1")),
    ?assertEqual({error, not_tracked}, headcount:untrack(N, <<"room:1">>)),
    ?assertEqual(0, headcount:count(N, <<"room:1">>)),
    ?assertEqual(ok, headcount:untrack(N, <<"room:2">>)),
    ?assertEqual({error, not_tracked}, headcount:untrack(N, <<"room:2">>)),
    ?assertEqual({error, not_tracked}, headcount:untrack(N, <<"never">>)),
    ?assertEqual(0, headcount:total(N)),
    %% any bytes are a topic
    Bin = <<0, 255, 1, 2, 0>>,
    ?assertEqual(ok, headcount:track(N, Bin)),
    ?assertEqual(1, headcount:count(N, Bin)),
    ok = headcount:stop(N).

track_other_pid_test() ->
    N = start(),
    P = idle(),
    ?assertEqual(ok, headcount:track(N, <<"t">>, P)),
    ?assertEqual({error, already_tracked}, headcount:track(N, <<"t">>, P)),
    ?assertEqual(ok, headcount:track(N, <<"t">>)),  % self, a different member
    ?assertEqual(2, headcount:count(N, <<"t">>)),
    ?assertEqual(ok, headcount:untrack(N, <<"t">>, P)),
    ?assertEqual({error, not_tracked}, headcount:untrack(N, <<"t">>, P)),
    ?assertEqual(1, headcount:count(N, <<"t">>)),
    P ! stop,
    wait_dead(P),
    ?assertEqual({error, noproc}, headcount:track(N, <<"t">>, P)),
    ?assertEqual({error, not_tracked}, headcount:untrack(N, <<"t">>, P)),
    ?assertEqual(1, headcount:count(N, <<"t">>)),
    ok = headcount:stop(N).

track_argument_errors_test() ->
    N = start(),
    ?assertEqual({error, invalid_topic}, headcount:track(N, <<>>)),
    ?assertEqual({error, invalid_topic}, headcount:track(N, [])),
    ?assertEqual({error, invalid_topic}, headcount:track(N, [<<>>, []])),
    ?assertEqual({error, invalid_topic}, headcount:track(N, binary:copy(<<"x">>, 1025))),
    ?assertEqual(ok, headcount:track(N, binary:copy(<<"x">>, 1024))),
    ?assertEqual({error, invalid_topic}, headcount:untrack(N, <<>>)),
    ?assertEqual({error, invalid_topic}, headcount:untrack(N, binary:copy(<<"x">>, 1025))),
    ?assertEqual({error, invalid_topic}, headcount:track(N, <<>>, idle())),
    %% a failed first track leaves no monitor or state behind
    ?assertMatch(#{<<"connections">> := 1, <<"beam">> := #{<<"processes">> := 1}}, headcount:stats(N)),
    [?assertError(badarg, headcount:track(N, T)) || T <- [room, 42, {a}, [a], [<<"a">> | b], 1.5, #{}, <<1:1>>]],
    [?assertError(badarg, headcount:untrack(N, T)) || T <- [room, 42, {a}]],
    [?assertError(badarg, headcount:track(H, <<"t">>)) || H <- [make_ref(), <<"node">>, self(), undefined]],
    [?assertError(badarg, headcount:untrack(H, <<"t">>)) || H <- [make_ref(), self()]],
    ?assertError(badarg, headcount:track(N, <<"t">>, not_a_pid)),
    ?assertError(badarg, headcount:track(N, <<"t">>, remote_pid())),
    ?assertError(badarg, headcount:untrack(N, <<"t">>, remote_pid())),
    ?assertError(badarg, headcount:untrack(N, <<"t">>, "pid")),
    ok = headcount:stop(N).

%% Untracking a process's last topic leaves it in no topic; it stays
%% monitored (one monitor, however often it comes back), and its death is
%% still noticed.
last_untrack_keeps_one_monitor_test() ->
    N = start(),
    P = idle(),
    ok = headcount:track(N, <<"a">>, P),
    ok = headcount:track(N, <<"b">>, P),
    ?assertMatch(#{<<"connections">> := 1, <<"tracked_pairs">> := 2,
                   <<"beam">> := #{<<"processes">> := 1}}, headcount:stats(N)),
    ok = headcount:untrack(N, <<"a">>, P),
    ok = headcount:untrack(N, <<"b">>, P),
    ?assertMatch(#{<<"connections">> := 0, <<"tracked_pairs">> := 0,
                   <<"beam">> := #{<<"processes">> := 1}}, headcount:stats(N)),
    [begin ok = headcount:track(N, <<"c">>, P), ok = headcount:untrack(N, <<"c">>, P) end
     || _ <- lists:seq(1, 100)],
    ?assertMatch({monitored_by, [_]}, erlang:process_info(P, monitored_by)),
    ok = headcount:track(N, <<"c">>, P),
    exit(P, kill),
    wait_until(fun() -> headcount:count(N, <<"c">>) =:= 0 end, 5000),
    ?assertMatch(#{<<"connections">> := 0, <<"beam">> := #{<<"processes">> := 0}}, headcount:stats(N)),
    ok = headcount:stop(N).

untrack_all_test() ->
    N = start(),
    P = idle(),
    [ok = headcount:track(N, T, P) || T <- [<<"a">>, <<"b">>, <<"c">>]],
    ok = headcount:track(N, <<"a">>),
    ?assertEqual(3, headcount:untrack_all(N, P)),
    ?assertEqual(0, headcount:untrack_all(N, P)),
    ?assertEqual(1, headcount:count(N, <<"a">>)),
    ?assertEqual(0, headcount:count(N, <<"b">>)),
    ?assertEqual({error, not_tracked}, headcount:untrack(N, <<"b">>, P)),
    %% it can come back, and its death is noticed
    ok = headcount:track(N, <<"b">>, P),
    exit(P, kill),
    wait_until(fun() -> headcount:count(N, <<"b">>) =:= 0 end, 5000),
    ?assertEqual(0, headcount:untrack_all(N, P)),       % a dead pid: nothing to do
    ?assertEqual(0, headcount:untrack_all(N, idle())),  % a pid never tracked
    ?assertEqual(1, headcount:untrack_all(N, self())),
    ?assertEqual(0, headcount:total(N)),
    ?assertError(badarg, headcount:untrack_all(N, remote_pid())),
    ?assertError(badarg, headcount:untrack_all(N, not_a_pid)),
    ?assertError(badarg, headcount:untrack_all(make_ref(), self())),
    ok = headcount:stop(N),
    ?assertEqual({error, closed}, headcount:untrack_all(N, self())).

%% -------------------------------------------------------------------------
%% Exits

exit_untracks_everywhere_test_() ->
    {timeout, 30, fun() ->
        N = start(),
        M = start(),
        %% normal exit
        in_process(fun() -> ok = headcount:track(N, <<"a">>), ok = headcount:track(N, <<"b">>) end),
        wait_until(fun() -> headcount:total(N) =:= 0 end, 5000),
        %% crash
        {P1, R1} = spawn_monitor(fun() -> ok = headcount:track(N, <<"a">>), exit(boom) end),
        receive {'DOWN', R1, _, P1, boom} -> ok end,
        wait_until(fun() -> headcount:total(N) =:= 0 end, 5000),
        %% killed, while tracked in two nodes
        P2 = idle(),
        [ok = headcount:track(X, T, P2) || X <- [N, M], T <- [<<"a">>, <<"b">>, <<"c">>]],
        ?assertEqual(3, headcount:total(N)),
        ?assertEqual(3, headcount:total(M)),
        exit(P2, kill),
        wait_until(fun() -> headcount:total(N) + headcount:total(M) =:= 0 end, 5000),
        ?assertMatch(#{<<"connections">> := 0}, headcount:stats(N)),
        ok = headcount:stop(N),
        ok = headcount:stop(M)
    end}.

ten_thousand_processes_killed_test_() ->
    {timeout, 120, fun() ->
        N = start(),
        Self = self(),
        Procs = [spawn(fun() ->
                     ok = headcount:track(N, <<"room:", (integer_to_binary(I rem 100))/binary>>),
                     Self ! {tracked, self()},
                     receive stop -> ok end
                 end) || I <- lists:seq(1, 10000)],
        [receive {tracked, P} -> ok end || P <- Procs],
        ?assertEqual(10000, headcount:total(N)),
        ?assertEqual(100, headcount:count(N, <<"room:7">>)),
        T0 = erlang:monotonic_time(microsecond),
        [exit(P, kill) || P <- Procs],
        Waited = wait_until(fun() -> headcount:total(N) =:= 0 end, 10000),
        Us = erlang:monotonic_time(microsecond) - T0,
        report("10,000 tracked processes killed: total reached 0 ~.1f ms after the first kill "
               "(~.1f ms after the last)", [Us / 1000, Waited / 1000]),
        [?assertEqual(0, headcount:count(N, <<"room:", (integer_to_binary(I))/binary>>))
         || I <- lists:seq(0, 99)],
        ?assertMatch(#{<<"connections">> := 0, <<"tracked_pairs">> := 0}, headcount:stats(N)),
        ok = headcount:stop(N)
    end}.

thousand_topics_process_dies_test_() ->
    {timeout, 60, fun() ->
        N = start(),
        Topics = [<<"topic:", (integer_to_binary(I))/binary>> || I <- lists:seq(1, 1000)],
        Runs = [begin
                    Self = self(),
                    P = spawn(fun() ->
                                  [ok = headcount:track(N, T) || T <- Topics],
                                  Self ! tracked,
                                  receive stop -> ok end
                              end),
                    receive tracked -> ok end,
                    1000 = headcount:total(N),
                    T0 = erlang:monotonic_time(microsecond),
                    exit(P, kill),
                    wait_until(fun() -> headcount:total(N) =:= 0 end, 5000),
                    erlang:monotonic_time(microsecond) - T0
                end || _ <- lists:seq(1, 5)],
        [?assertEqual(0, headcount:count(N, T)) || T <- Topics],
        Sorted = lists:sort(Runs),
        report("a process tracking 1,000 topics killed: all counts 0 after ~.3f ms "
               "(median of 5; min ~.3f, max ~.3f) [Phoenix.Tracker: 117 ms]",
               [lists:nth(3, Sorted) / 1000, hd(Sorted) / 1000, lists:last(Sorted) / 1000]),
        ?assert(lists:nth(3, Sorted) < 100000),
        ok = headcount:stop(N)
    end}.

%% Many pids in the per-node pid map: it grows, serves lookups, shrinks.
pid_map_churn_test_() ->
    {timeout, 120, fun() ->
        N = start(),
        Procs = [idle() || _ <- lists:seq(1, 20000)],
        [ok = headcount:track(N, T, P) || P <- Procs, T <- [<<"x">>, <<"y">>]],
        ?assertEqual(20000, headcount:count(N, <<"x">>)),
        {Half, Rest} = lists:split(10000, Procs),
        [ok = headcount:untrack(N, <<"x">>, P) || P <- Half],
        [ok = headcount:untrack(N, <<"y">>, P) || P <- Half],
        [{error, not_tracked} = headcount:untrack(N, <<"y">>, P) || P <- Half],
        ?assertEqual(10000, headcount:count(N, <<"x">>)),
        [{error, already_tracked} = headcount:track(N, <<"y">>, P) || P <- Rest],
        [exit(P, kill) || P <- Procs],
        wait_until(fun() -> headcount:total(N) =:= 0 end, 10000),
        ?assertMatch(#{<<"connections">> := 0}, headcount:stats(N)),
        %% the emptied map still works
        P1 = idle(),
        ok = headcount:track(N, <<"x">>, P1),
        ?assertEqual(1, headcount:count(N, <<"x">>)),
        ok = headcount:stop(N)
    end}.

%% Several schedulers tracking and untracking the same topics at once end
%% with exact counts.
concurrent_exact_counts_test_() ->
    {timeout, 60, fun() ->
        N = start(),
        Self = self(),
        Topics = [<<"c:", (integer_to_binary(I))/binary>> || I <- lists:seq(1, 200)],
        Workers = [spawn(fun() ->
                       [ok = headcount:track(N, T) || T <- Topics],
                       [ok = headcount:untrack(N, T) || {I, T} <- lists:zip(lists:seq(1, 200), Topics), I rem 2 =:= 0],
                       Self ! {done, self()},
                       receive stop -> ok end
                   end) || _ <- lists:seq(1, 16)],
        [receive {done, W} -> ok end || W <- Workers],
        ?assertEqual(16, headcount:count(N, <<"c:1">>)),
        ?assertEqual(0, headcount:count(N, <<"c:2">>)),
        ?assertEqual(16 * 100, headcount:total(N)),
        [W ! stop || W <- Workers],
        wait_until(fun() -> headcount:total(N) =:= 0 end, 5000),
        ok = headcount:stop(N)
    end}.

%% -------------------------------------------------------------------------
%% Reads, cluster calls, stats

reads_test() ->
    N = start(),
    ?assertEqual(0, headcount:count(N, <<"nobody">>)),
    ?assertEqual(0, headcount:count_local(N, <<"nobody">>)),
    ok = headcount:track(N, <<"r">>),
    ok = headcount:track(N, <<"r">>, idle()),
    ?assertEqual(2, headcount:count(N, <<"r">>)),
    ?assertEqual(2, headcount:count_local(N, "r")),
    ?assertEqual(#{count => 2, local => 2, peers_reporting => 0, peers_known => 0,
                   oldest_report_age_ms => 0}, headcount:count_info(N, [<<"r">>])),
    ?assertEqual(2, headcount:total(N)),
    [?assertEqual({error, invalid_topic}, F(N, <<>>))
     || F <- [fun headcount:count/2, fun headcount:count_local/2, fun headcount:count_info/2]],
    [?assertError(badarg, F(N, an_atom))
     || F <- [fun headcount:count/2, fun headcount:count_local/2, fun headcount:count_info/2]],
    [?assertError(badarg, F(make_ref(), <<"r">>))
     || F <- [fun headcount:count/2, fun headcount:count_local/2, fun headcount:count_info/2]],
    [?assertError(badarg, F(make_ref()))
     || F <- [fun headcount:total/1, fun headcount:stats/1, fun headcount:stats_json/1,
              fun headcount:local_addr/1, fun headcount:stop/1]],
    ok = headcount:stop(N).

local_node_cluster_calls_test() ->
    N = start(),
    ?assertEqual(undefined, headcount:local_addr(N)),
    ?assertMatch({error, {invalid_argument, <<_/binary>>}}, headcount:add_peer(N, <<"127.0.0.1:7401">>)),
    ?assertMatch({error, {invalid_argument, _}}, headcount:add_peer(N, "not an address")),
    ?assertError(badarg, headcount:add_peer(N, not_iodata)),
    ?assertError(badarg, headcount:add_peer(N, <<"127.0.0.1:1", 0>>)),
    ?assertError(badarg, headcount:add_peer(make_ref(), <<"127.0.0.1:1">>)),
    ok = headcount:stop(N).

stats_test() ->
    %% No flush may run between the two reads compared below.
    {ok, N} = headcount:start(#{flush_mode => fixed, flush_interval_ms => 60000}),
    ok = headcount:track(N, <<"s">>),
    Json = headcount:stats_json(N),
    ?assert(is_binary(Json)),
    Stats = headcount:stats(N),
    ?assertEqual(maps:remove(<<"beam">>, Stats), headcount_json:decode(headcount:stats_json(N))),
    ?assertMatch(#{<<"topics">> := 1, <<"tracked_pairs">> := 1, <<"connections">> := 1,
                   <<"total_local">> := 1, <<"peers">> := Peers} when is_list(Peers), Stats),
    ?assertMatch(#{<<"processes">> := 1, <<"monitor_bytes">> := M, <<"pid_table_bytes">> := T,
                   <<"bytes_per_process">> := B, <<"node_bytes">> := F}
                     when M > 0 andalso T > 0 andalso B =:= M + T andalso F > 0,
                 maps:get(<<"beam">>, Stats)),
    ok = headcount:stop(N).

%% What stats/1 says a tracked process costs the BEAM is what it costs,
%% and that is at most 1.5 times a plain erlang:monitor/2.
beam_memory_test_() ->
    {timeout, 300, fun() ->
        K = 50000,
        N = start(),
        %% erlang:memory/1 counts the whole VM: on a busy machine an
        %% unrelated allocation can land inside one measurement, and only
        %% ever adds. Up to 3 measurements, each of fresh processes; the
        %% claims must hold for one of them.
        Attempts = [beam_memory_attempt(N, K) || _ <- lists:seq(1, 3)],
        Good = [A || {Plain, Tracked, Said} = A <- Attempts,
                     abs(Said - Tracked) < 0.15 * Tracked, Tracked =< 1.5 * Plain],
        ?assertNotEqual([], Good, Attempts),
        ok = headcount:stop(N)
    end}.

%% One measurement: {bytes per plain monitor, bytes per tracked process
%% measured, bytes per tracked process as stats/1 says}.
beam_memory_attempt(N, K) ->
    Users = [idle() || _ <- lists:seq(1, K)],
    Self = self(),
    M0 = settled_memory(),
    Holder = spawn(fun() ->
                       [erlang:monitor(process, P) || P <- Users],
                       Self ! monitored,
                       receive stop -> ok end
                   end),
    receive monitored -> ok end,
    M1 = settled_memory(),
    exit(Holder, kill),
    wait_dead(Holder),
    M2 = settled_memory(),
    [ok = headcount:track(N, <<"t">>, P) || P <- Users],
    M3 = settled_memory(),
    Plain = (M1 - M0) / K,
    Tracked = (M3 - M2) / K,
    #{<<"processes">> := K, <<"bytes_per_process">> := Said} = maps:get(<<"beam">>, headcount:stats(N)),
    report("BEAM memory per tracked process: ~.1f B measured, ~b B in stats; "
           "per plain monitor ~.1f B (ratio ~.2f)", [Tracked, Said, Plain, Tracked / Plain]),
    [exit(P, kill) || P <- Users],
    wait_until(fun() -> headcount:total(N) =:= 0 end, 10000),
    wait_until(fun() -> maps:get(<<"processes">>, maps:get(<<"beam">>, headcount:stats(N))) =:= 0 end, 10000),
    {Plain, Tracked, Said}.

settled_memory() ->
    [erlang:garbage_collect(P) || P <- processes()],
    timer:sleep(100),
    [erlang:garbage_collect(P) || P <- processes()],
    erlang:memory(total).

version_test() ->
    V = headcount:version(),
    ?assertMatch([_, _, _ | _], binary:split(V, <<".">>, [global])).

json_decoder_test() ->
    D = fun headcount_json:decode/1,
    ?assertEqual(#{<<"a">> => [1, -2.5e3, true, false, null, <<"x", 16#e9/utf8, 16#1F600/utf8, $\n>>],
                   <<"b">> => #{}, <<"c">> => [], <<"d">> => 0.5, <<"e">> => 100.0},
                 D(<<" {\"a\": [1, -2.5e3, true, false, null, \"x\\u00e9\\ud83d\\ude00\\n\"],"
                     " \"b\": {}, \"c\": [], \"d\":0.5, \"e\": 1E2} ">>)),
    ?assertEqual(<<"\"\\/\b\f\r\t">>, D(<<"\"\\\"\\\\\\/\\b\\f\\r\\t\"">>)),
    ?assertEqual(18446744073709551615, D(<<"18446744073709551615">>)),
    [?assertError({invalid_json, _}, D(B))
     || B <- [<<>>, <<"{">>, <<"[1,]">>, <<"01">>, <<"1.">>, <<"-">>, <<"\"\\u+123\"">>,
              <<"{\"a\":1,}">>, <<"1 2">>, <<"\"\\ud800\"">>, <<"\"\\udc00\"">>, <<"1e400">>,
              <<"\"a">>, <<"\"\n\"">>, <<"tru">>, <<"{1:2}">>, <<"\"\\x\"">>, <<"\"", 255, "\"">>]].

%% -------------------------------------------------------------------------
%% stop, lifetimes, races

stopped_node_test() ->
    N = start(),
    P = idle(),
    ok = headcount:track(N, <<"t">>),
    ok = headcount:track(N, <<"t">>, P),
    ?assertEqual(ok, headcount:stop(N)),
    ?assertEqual(ok, headcount:stop(N)),  % idempotent
    C = {error, closed},
    ?assertEqual(C, headcount:track(N, <<"t">>)),
    ?assertEqual(C, headcount:track(N, <<"t">>, P)),
    ?assertEqual(C, headcount:untrack(N, <<"t">>)),
    ?assertEqual(C, headcount:untrack(N, <<"t">>, P)),
    ?assertEqual(C, headcount:count(N, <<"t">>)),
    ?assertEqual(C, headcount:count_local(N, <<"t">>)),
    ?assertEqual(C, headcount:count_info(N, <<"t">>)),
    ?assertEqual(C, headcount:total(N)),
    ?assertEqual(C, headcount:local_addr(N)),
    ?assertEqual(C, headcount:add_peer(N, <<"127.0.0.1:1">>)),
    ?assertEqual(C, headcount:stats(N)),
    ?assertEqual(C, headcount:stats_json(N)),
    %% type errors still win over closed
    ?assertError(badarg, headcount:track(N, an_atom)),
    %% a tracked process dying after stop is harmless
    exit(P, kill),
    wait_dead(P).

%% stop/1 with many tracked processes: demonitors them all; their later
%% deaths touch nothing.
stop_with_many_tracked_test_() ->
    {timeout, 60, fun() ->
        N = start(),
        Users = [idle() || _ <- lists:seq(1, 20000)],
        [ok = headcount:track(N, <<"t">>, U) || U <- Users],
        T0 = erlang:monotonic_time(microsecond),
        ok = headcount:stop(N),
        report("stop/1 with 20,000 tracked processes: ~.1f ms",
               [(erlang:monotonic_time(microsecond) - T0) / 1000]),
        [exit(U, kill) || U <- Users],
        [wait_dead(U) || U <- Users],
        ?assertEqual({error, closed}, headcount:count(N, <<"t">>))
    end}.

start_stop_cycles_test_() ->
    {timeout, 120, fun() ->
        ok = headcount:stop(start()),  % warm up anything lazily started
        Threads = os_threads(),
        [begin
             N = start(),
             P = idle(),
             ok = headcount:track(N, <<"t">>, P),
             ok = headcount:track(N, <<"t">>),
             ok = headcount:stop(N),
             exit(P, kill)
         end || _ <- lists:seq(1, 200)],
        ?assertEqual(Threads, os_threads())
    end}.

%% A node nobody stops is freed by the garbage collector: its threads end,
%% and the processes it tracked live and die without touching it.
garbage_collected_node_test_() ->
    {timeout, 60, fun() ->
        ok = headcount:stop(start()),
        Threads = os_threads(),
        Others = [idle() || _ <- lists:seq(1, 50)],
        in_process(fun() ->
                       N = start(),
                       ok = headcount:track(N, <<"mine">>),
                       [ok = headcount:track(N, <<"theirs">>, P) || P <- Others],
                       50 = headcount:count(N, <<"theirs">>),
                       ok
                   end),
        %% the handle is gone with the process; collect whatever still
        %% references the binary
        wait_until(fun() ->
                       [erlang:garbage_collect(P) || P <- processes()],
                       os_threads() =:= Threads
                   end, 30000),
        [exit(P, kill) || P <- Others],
        [wait_dead(P) || P <- Others],
        %% and the VM still runs NIF calls on fresh nodes
        N2 = start(),
        ok = headcount:track(N2, <<"t">>),
        ok = headcount:stop(N2)
    end}.

%% The same for listening nodes in a cluster: once every node is stopped or
%% collected, all their threads (listeners, dialers, writers, flushers) are
%% gone, and a surviving peer sees a collected node leave.
clustered_lifetimes_test_() ->
    {timeout, 120, fun() ->
        Cfg = #{secret => <<"s">>, listen => <<"127.0.0.1:0">>, flush_interval_ms => 20,
                down_after_ms => 300},
        {ok, Warm} = headcount:start(Cfg),
        ok = headcount:stop(Warm),
        Threads = os_threads(),
        {ok, Stay} = headcount:start(Cfg),
        StayAddr = headcount:local_addr(Stay),
        %% stopped
        [begin
             {ok, N} = headcount:start(Cfg#{seeds => [StayAddr]}),
             ok = headcount:track(N, <<"t">>),
             ok = headcount:stop(N)
         end || _ <- lists:seq(1, 10)],
        %% garbage collected while connected and counted by Stay
        in_process(fun() ->
                       {ok, N} = headcount:start(Cfg#{seeds => [StayAddr]}),
                       ok = headcount:track(N, <<"gc">>, self()),
                       wait_until(fun() -> headcount:count(Stay, <<"gc">>) =:= 1 end, 10000),
                       ok
                   end),
        wait_until(fun() ->
                       [erlang:garbage_collect(P) || P <- processes()],
                       headcount:count(Stay, <<"gc">>) =:= 0
                   end, 10000),
        ok = headcount:stop(Stay),
        wait_until(fun() -> os_threads() =:= Threads end, 10000),
        %% two connected nodes, neither stopped, both collected
        in_process(fun() ->
                       {ok, A} = headcount:start(Cfg),
                       {ok, B} = headcount:start(Cfg#{seeds => [headcount:local_addr(A)]}),
                       ok = headcount:track(A, <<"x">>),
                       wait_until(fun() -> headcount:count(B, <<"x">>) =:= 1 end, 10000),
                       ok
                   end),
        wait_until(fun() ->
                       [erlang:garbage_collect(P) || P <- processes()],
                       os_threads() =:= Threads
                   end, 10000)
    end}.

%% stop/1 racing tracks, untracks, reads and deaths on other schedulers:
%% every call returns a valid answer and nothing crashes.
stop_races_everything_test_() ->
    {timeout, 120, fun() ->
        [race_once(I) || I <- lists:seq(1, 30)]
    end}.

race_once(I) ->
    N = start(),
    Self = self(),
    Victims = [begin P = idle(), ok = headcount:track(N, <<"v">>, P), P end || _ <- lists:seq(1, 200)],
    Workers = [spawn_link(fun() -> Self ! {self(), hammer(N, W, 0)} end) || W <- lists:seq(1, 4)],
    timer:sleep(I rem 5),
    Killer = spawn_link(fun() -> [exit(P, kill) || P <- Victims], Self ! {self(), killed} end),
    ok = headcount:stop(N),
    receive {Killer, killed} -> ok end,
    Counts = [receive {W, Calls} -> Calls end || W <- Workers],
    ?assert(lists:all(fun(C) -> C > 0 end, Counts)).

hammer(N, W, Calls) ->
    T = <<"h:", (integer_to_binary(Calls rem 7))/binary>>,
    R1 = headcount:track(N, T),
    R2 = headcount:count(N, T),
    R3 = headcount:untrack(N, T),
    R4 = headcount:stats_json(N),
    ok = valid(R1, [ok, {error, already_tracked}]),
    ok = valid(R3, [ok, {error, not_tracked}]),
    true = is_integer(R2) orelse R2 =:= {error, closed},
    true = is_binary(R4) orelse R4 =:= {error, closed},
    case lists:member({error, closed}, [R1, R2, R3, R4]) of
        true -> Calls + 1;
        false -> hammer(N, W, Calls + 1)
    end.

valid({error, closed}, _) -> ok;
valid(R, Allowed) ->
    case lists:member(R, Allowed) of
        true -> ok;
        false -> {unexpected, R}
    end.

%% -------------------------------------------------------------------------
%% Latency: every call is a short NIF (no dirty scheduler needed)

call_latency_test_() ->
    {timeout, 60, fun() ->
        N = start(),
        %% Phoenix's shape: many processes, each in a room of 1,000.
        Users = [idle() || _ <- lists:seq(1, 20000)],
        Rooms = [<<"room:", (integer_to_binary(I rem 1000))/binary>> || I <- lists:seq(1, 20000)],
        UR = lists:zip(Users, Rooms),
        Time = fun(F) -> T0 = erlang:monotonic_time(nanosecond), F(), erlang:monotonic_time(nanosecond) - T0 end,
        Track = [Time(fun() -> ok = headcount:track(N, R, U) end) || {U, R} <- UR],
        Count = [Time(fun() -> headcount:count(N, R) end) || R <- Rooms],
        Stats = [Time(fun() -> headcount:stats_json(N) end) || _ <- lists:seq(1, 200)],
        Untrack = [Time(fun() -> ok = headcount:untrack(N, R, U) end) || {U, R} <- UR],
        Summary = [{Name, pct(L, 50), pct(L, 99), lists:max(L)}
                   || {Name, L} <- [{'track/3', Track}, {count, Count}, {'untrack/3', Untrack},
                                    {stats_json, Stats}]],
        report("call latency in us (p50 / p99 / max; 20,000 calls, 200 for stats_json; "
               "track/3 creates a monitor): ~s",
               [[io_lib:format("~s ~.1f/~.1f/~.1f  ", [Name, P50 / 1000, P99 / 1000, Max / 1000])
                 || {Name, P50, P99, Max} <- Summary]]),
        %% A bound that holds for a debug build of the library on a busy
        %% machine; bench.escript measures the release build.
        [?assert(P50 < 100000) || {Name, P50, _, _} <- Summary, Name =/= stats_json],
        [exit(U, kill) || U <- Users],
        ok = headcount:stop(N)
    end}.

pct(L, P) ->
    S = lists:sort(L),
    lists:nth(max(1, (length(S) * P) div 100), S).

%% -------------------------------------------------------------------------
%% Two nodes in one VM

two_nodes_converge_test_() ->
    {timeout, 60, fun two_nodes_converge/0}.

two_nodes_converge() ->
    Base = #{secret => <<"test-secret">>, flush_interval_ms => 20, down_after_ms => 500},
    {ok, A} = headcount:start(Base#{node_name => <<"a">>, listen => <<"127.0.0.1:0">>}),
    Addr = headcount:local_addr(A),
    ?assertMatch(<<"127.0.0.1:", Port/binary>> when Port =/= <<"0">>, Addr),
    {ok, B} = headcount:start(Base#{node_name => <<"b">>, listen => "127.0.0.1:0", seeds => [Addr]}),
    T = <<"room:lobby">>,
    PA = [idle() || _ <- lists:seq(1, 3)],
    PB = [idle() || _ <- lists:seq(1, 2)],
    [ok = headcount:track(A, T, P) || P <- PA],
    [ok = headcount:track(B, T, P) || P <- PB],
    Both = fun(Want) -> headcount:count(A, T) =:= Want andalso headcount:count(B, T) =:= Want end,
    Ms = wait_until(fun() -> Both(5) end, 10000) / 1000,
    report("two nodes converged on 5 in ~.1f ms (after the last track)", [Ms]),
    ?assertEqual(3, headcount:count_local(A, T)),
    ?assertEqual(2, headcount:count_local(B, T)),
    ?assertMatch(#{count := 5, local := 3, peers_reporting := 1, peers_known := 1},
                 headcount:count_info(A, T)),
    ?assertEqual(5, headcount:total(B)),
    ?assertMatch(#{<<"peers">> := [_]}, headcount:stats(A)),
    ?assertMatch({error, {invalid_argument, _}}, headcount:add_peer(A, <<"not an address">>)),
    %% deaths on A reach B
    [exit(P, kill) || P <- PA],
    wait_until(fun() -> Both(2) end, 10000),
    %% a third node joining through add_peer
    {ok, C} = headcount:start(Base#{node_name => <<"c">>, listen => "127.0.0.1:0"}),
    ok = headcount:track(C, T),
    ok = headcount:add_peer(C, headcount:local_addr(B)),
    wait_until(fun() -> Both(3) andalso headcount:count(C, T) =:= 3 end, 10000),
    %% a graceful stop drops B's counts on the others at once
    ok = headcount:stop(B),
    wait_until(fun() -> headcount:count(A, T) =:= 1 andalso headcount:count(C, T) =:= 1 end, 10000),
    ok = headcount:stop(C),
    ok = headcount:stop(A),
    [exit(P, kill) || P <- PB].

%% -------------------------------------------------------------------------
%% Logs: the library's lines reach OTP's logger through headcount_logger.

%% A logger handler (this module's log/2) that forwards headcount's events
%% to the process in its config.
log(#{level := Level, msg := {Format, Args}, meta := #{domain := [headcount]} = Meta},
    #{config := #{pid := Pid}}) ->
    Pid ! {logged, Level, unicode:characters_to_binary(io_lib:format(Format, Args)), Meta};
log(_, _) ->
    ok.

%% The first forwarded event at Level from node Node whose message holds
%% Needle, within 10 s.
logged(Level, Node, Needle) ->
    receive
        {logged, Level, Msg, #{node_name := Node} = Meta} = E ->
            case binary:match(Msg, Needle) of
                nomatch -> logged(Level, Node, Needle);
                _ -> {Msg, Meta, E}
            end
    after 10000 ->
        error({no_log_line, Level, Node, Needle})
    end.

log_lines_reach_otp_logger_test_() ->
    {timeout, 60, fun log_lines_reach_otp_logger/0}.

log_lines_reach_otp_logger() ->
    #{level := Primary} = logger:get_primary_config(),
    ok = logger:set_primary_config(level, all),
    ok = logger:add_handler(hc_test_handler, ?MODULE, #{level => all, config => #{pid => self()}}),
    try
        Fast = #{flush_interval_ms => 20, down_after_ms => 300},
        {ok, A} = headcount:start(Fast#{node_name => <<"logged">>, listen => <<"127.0.0.1:0">>,
                                        secret => <<"right">>}),
        ?assert(is_pid(whereis(headcount_logger))),
        %% Logged on the dirty scheduler that ran start/1.
        {_, Meta, _} = logged(info, <<"logged">>, <<"listening on 127.0.0.1:">>),
        ?assertMatch(#{target := <<"headcount::cluster", _/binary>>}, Meta),
        %% Logged on one of the library's own threads: a peer with the
        %% wrong secret is refused with a warning.
        {ok, X} = headcount:start(Fast#{node_name => <<"stranger">>, seeds => [headcount:local_addr(A)],
                                        secret => <<"wrong">>}),
        {_, Meta2, _} = logged(warning, <<"logged">>, <<"authentication failed">>),
        ?assertMatch(#{target := <<"headcount::cluster::shared">>}, Meta2),
        ok = headcount:stop(X),
        ok = headcount:stop(A)
    after
        ok = logger:remove_handler(hc_test_handler),
        ok = logger:set_primary_config(level, Primary)
    end.
