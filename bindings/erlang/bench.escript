#!/usr/bin/env escript
%% -*- erlang -*-
%%
%% The headcount NIF beside the runtime's own monitors, in one VM.
%%
%%   make -C bindings/erlang bench    # builds (release library) and runs this
%%   ./bench.escript                  # ROUNDS x (+S 1, +S 2), each in a fresh VM
%%   ./bench.escript --here           # one run in this VM (ERL_FLAGS="+S 4" ...)
%%   make -C bindings/erlang bench BASE=<git rev>
%%                                    # also the NIF of that revision, loaded
%%                                    # beside this one as module headcount_base
%%   ./bench.escript --watch          # the change feed, per change as a message
%%                                    # (see watch_bench/0)
%%
%% Each VM runs its comparators side by side, interleaved, RUNS times, on
%% fresh idle "user" processes (USERS per scheduler; one driver process per
%% scheduler, each with its own share):
%%
%%   monitor+demonitor         erlang:demonitor(erlang:monitor(process, P)):
%%                             the runtime's own cost of watching a process.
%%   track/3, new process      the first track of P (the NIF monitors it).
%%   track/3, tracked process  P, already tracked (and monitored), joins
%%                             another room: the steady-state track.
%%   (base: the same two      with headcount_base, when built: the NIF
%%    with the base NIF)      of another revision, same library, same VM.
%%   untrack/3                 ... and leaves it again.
%%   track/2 + untrack/2       the driver itself joins and leaves a room.
%%   deaths                    tracked users are killed; the down callback
%%                             untracks each from all its rooms.
%%
%% And once per VM, the BEAM memory of N plain monitors against N tracked
%% processes (erlang:memory(total) before and after; the library's own
%% memory is not BEAM memory), with what headcount:stats/1 says.
%%
%% The parent prints each VM's medians, then the ratios the targets are
%% about. The machine may be shared: compare ratios from one run, not
%% absolute figures across runs.
-mode(compile).

-define(USERS, 20000).     % per scheduler, per run
-define(ROOMS, 10000).
-define(RUNS, 5).          % per VM
-define(ROUNDS, 2).        % VMs per scheduler count (parent)
-define(SELF_LOOPS, 100000).
-define(MEM_N, 100000).

main(["--here"]) ->
    setup(),
    run();
main(["--watch"]) ->
    setup(),
    watch_bench();
main([]) ->
    setup(),
    Script = escript:script_name(),
    Results = [begin
                   Cmd = "ERL_FLAGS='+S " ++ integer_to_list(S) ++ "' " ++ Script ++ " --here 2>&1",
                   Out = os:cmd(Cmd),
                   io:put_chars(Out),
                   {S, parse(Out)}
               end || _ <- lists:seq(1, ?ROUNDS), S <- [1, 2]],
    summary(Results);
main(_) ->
    io:format("usage: bench.escript [--here | --watch]~n"),
    halt(2).

setup() ->
    Dir = filename:dirname(filename:absname(escript:script_name())),
    true = code:add_patha(filename:join(Dir, "ebin")),
    Lib = case file:read_file(filename:join([Dir, "priv", ".hc_lib"])) of
              {ok, Path} -> string:trim(Path);
              _ -> <<"unknown">>
          end,
    put(lib, Lib),
    {module, headcount} = code:ensure_loaded(headcount),
    code:add_patha(filename:join([Dir, "priv", "base"])),
    Base = case os:getenv("HEADCOUNT_BASE_NIF") of
               false -> [];
               _ -> {module, headcount_base} = code:ensure_loaded(headcount_base), [headcount_base]
           end,
    put(base, Base).

%% -------------------------------------------------------------------------
%% One VM

run() ->
    S = erlang:system_info(schedulers_online),
    Lib = get(lib),
    io:format("~nheadcount ~s NIF bench: OTP ~s, ~b scheduler(s) online, ~b CPUs, load ~s, ~s~n",
              [headcount:version(), erlang:system_info(otp_release), S,
               erlang:system_info(logical_processors_available), loadavg(), Lib]),
    case binary:match(Lib, <<"/debug/">>) of
        nomatch -> ok;
        _ -> io:format("  WARNING: linked against a debug build of the library; run 'make bench'~n")
    end,
    {ok, N} = headcount:start(#{flush_interval_ms => 100}),
    Bases = [{M, element(2, {ok, _} = M:start(#{flush_interval_ms => 100}))} || M <- get(base)],
    Rooms = list_to_tuple([<<"room:", (integer_to_binary(I))/binary>> || I <- lists:seq(1, ?ROOMS)]),
    Half = ?ROOMS div 2,
    Home = fun(I) -> element(I rem Half + 1, Rooms) end,
    Room = fun(I) -> element(Half + I rem Half + 1, Rooms) end,
    Runs = [one_run(N, S, Home, Room) ++ lists:append([base_run(M, B, S, Home, Room) || {M, B} <- Bases])
            || _ <- lists:seq(1, ?RUNS)],
    Ops = S * ?USERS,
    Med = fun(K) -> median([proplists:get_value(K, R) || R <- Runs]) end,
    [result(K, What, Ops * Mult, Med(K), Unit)
     || {K, What, Mult, Unit} <- [{mon, "monitor+demonitor (runtime)", 1, "pairs/s"},
                                  {first, "track/3, new process (monitor)", 1, "tracks/s"},
                                  {again, "track/3, tracked process", 1, "tracks/s"},
                                  {untrack, "untrack/3 (not the last topic)", 1, "untracks/s"},
                                  {self, "track/2 + untrack/2 (self)", 2 * ?SELF_LOOPS div ?USERS, "calls/s"},
                                  {death, "tracked process killed -> untracked", 1, "deaths/s"}]
                          ++ [{K, What, 1, "tracks/s"} || Bases =/= [],
                              {K, What} <- [{first_base, "base NIF: track/3, new process"},
                                            {again_base, "base NIF: track/3, tracked process"}]]],
    [cpu_result(K, What, Med(K)) || {K, What} <- [{mon_cpu, "monitor+demonitor (runtime)"},
                                                  {first_cpu, "track/3, new process"},
                                                  {again_cpu, "track/3, tracked process"}]
                                                 ++ [{K, W} || Bases =/= [],
                                                     {K, W} <- [{first_base_cpu, "base NIF: track/3, new process"},
                                                                {again_base_cpu, "base NIF: track/3, tracked process"}]]],
    memory(N),
    ok = headcount:stop(N),
    [ok = M:stop(B) || {M, B} <- Bases].

%% The base NIF's first and steady-state track, on fresh users.
base_run(M, N, S, Home, Room) ->
    U = users(S),
    {First, FirstCpu} = costed(S, fun(W) -> each(element(W, U), fun(I, P) -> ok = M:track(N, Home(I * 7919), P) end) end),
    {Again, AgainCpu} = costed(S, fun(W) -> each(element(W, U), fun(I, P) -> ok = M:track(N, Room(I * 13), P) end) end),
    kill(U),
    [{first_base, First}, {again_base, Again}, {first_base_cpu, FirstCpu}, {again_base_cpu, AgainCpu}].

one_run(N, S, Home, Room) ->
    Fresh = fun() -> users(S) end,
    B = headcount:total(N),  % the drivers' own rooms, from earlier runs
    U1 = Fresh(),
    {Mon, MonCpu} = costed(S, fun(W) -> each(element(W, U1), fun(_, P) -> erlang:demonitor(erlang:monitor(process, P)) end) end),
    U2 = Fresh(),
    {First, FirstCpu} = costed(S, fun(W) -> each(element(W, U2), fun(I, P) -> ok = headcount:track(N, Home(I * 7919), P) end) end),
    check(N, B + S * ?USERS),
    {Again, AgainCpu} = costed(S, fun(W) -> each(element(W, U2), fun(I, P) -> ok = headcount:track(N, Room(I * 13), P) end) end),
    check(N, B + 2 * S * ?USERS),
    {Untrack, _} = parallel(S, fun(W) -> each(element(W, U2), fun(I, P) -> ok = headcount:untrack(N, Room(I * 13), P) end) end),
    check(N, B + S * ?USERS),
    {Self, _} = parallel(S, fun(W) -> self_loop(N, Room, W * 1000, ?SELF_LOOPS) end),
    Base = headcount:total(N) - S * ?USERS,
    T0 = erlang:monotonic_time(microsecond),
    kill(U2),
    wait_total(N, Base),
    Death = erlang:monotonic_time(microsecond) - T0,
    kill(U1),
    [{mon, Mon}, {first, First}, {again, Again}, {untrack, Untrack}, {self, Self}, {death, Death},
     {mon_cpu, MonCpu}, {first_cpu, FirstCpu}, {again_cpu, AgainCpu}].

users(S) ->
    list_to_tuple([list_to_tuple([spawn(fun idle/0) || _ <- lists:seq(1, ?USERS)]) || _ <- lists:seq(1, S)]).

idle() -> receive stop -> ok end.

kill(Users) ->
    Ps = [P || Ws <- tuple_to_list(Users), P <- tuple_to_list(Ws)],
    [exit(P, kill) || P <- Ps],
    [wait_dead(P) || P <- Ps],
    ok.

wait_dead(P) ->
    Ref = erlang:monitor(process, P),
    receive {'DOWN', Ref, _, _, _} -> ok end.

each(Ps, F) -> each(Ps, 1, F).

each(Ps, I, _F) when I > tuple_size(Ps) -> ok;
each(Ps, I, F) -> F(I, element(I, Ps)), each(Ps, I + 1, F).

self_loop(N, Room, Base, K) ->
    _ = headcount:track(N, <<"worker:", (integer_to_binary(Base))/binary>>),  % ok, or already_tracked
    self_loop1(N, Room, Base, K).

self_loop1(_, _, _, 0) -> ok;
self_loop1(N, Room, Base, K) ->
    T = Room(Base + K rem 4),
    ok = headcount:track(N, T),
    ok = headcount:untrack(N, T),
    self_loop1(N, Room, Base, K - 1).

check(N, Want) ->
    case headcount:total(N) of
        Want -> ok;
        Got -> error({total, Got, expected, Want})
    end.

wait_total(N, Want) ->
    case headcount:total(N) of
        Want -> ok;
        _ -> erlang:yield(), wait_total(N, Want)
    end.

%% parallel/2, from and to an idle VM, with the CPU time of the normal
%% schedulers' threads (Linux schedstat) per operation: the cost of the
%% calls together with what they make other processes do (a monitor's
%% target has to take the monitor signal), where the wall time is only the
%% drivers' loop.
costed(S, Fun) ->
    Threads = scheduler_threads(),
    wait_idle(),
    C0 = cpu_ns(Threads),
    {Us, _} = parallel(S, Fun),
    wait_idle(),
    {Us, (cpu_ns(Threads) - C0) / (S * ?USERS)}.

scheduler_threads() ->
    case file:list_dir("/proc/self/task") of
        {ok, Ts} ->
            [T || T <- Ts, {ok, C} <- [file:read_file("/proc/self/task/" ++ T ++ "/comm")],
                  binary:match(C, <<"_scheduler">>) =/= nomatch, binary:match(C, <<"dirty">>) =:= nomatch];
        {error, _} ->
            []
    end.

cpu_ns(Threads) ->
    lists:sum([case file:read_file("/proc/self/task/" ++ T ++ "/schedstat") of
                   {ok, B} -> binary_to_integer(hd(binary:split(B, <<" ">>)));
                   {error, _} -> 0
               end || T <- Threads]).

wait_idle() ->
    case erlang:statistics(total_active_tasks) of
        1 -> ok;
        _ -> timer:sleep(2), wait_idle()
    end.

%% Runs Fun(W) in driver W for W in 1..S at once; returns the wall time
%% from the start signal to the last finish, in microseconds. The drivers
%% live for the whole bench (a driver that exited would be untracked).
parallel(S, Fun) ->
    Drivers = drivers(S),
    erlang:garbage_collect(),
    T0 = erlang:monotonic_time(microsecond),
    [P ! {run, self(), W, Fun} || {W, P} <- Drivers],
    Rs = [receive {done, P, R} -> R end || {_, P} <- Drivers],
    {erlang:monotonic_time(microsecond) - T0, Rs}.

drivers(S) ->
    case get(drivers) of
        undefined ->
            Ds = [{W, spawn_opt(fun driver/0, [link, {min_heap_size, 4096}])} || W <- lists:seq(1, S)],
            put(drivers, Ds),
            Ds;
        Ds ->
            Ds
    end.

driver() ->
    receive
        {run, From, W, Fun} ->
            From ! {done, self(), Fun(W)},
            driver()
    end.

%% BEAM memory: ?MEM_N plain monitors held by one process, against ?MEM_N
%% tracked processes (one topic each).
memory(N) ->
    Users = [spawn(fun idle/0) || _ <- lists:seq(1, ?MEM_N)],
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
    [ok = headcount:track(N, <<"mem">>, P) || P <- Users],
    M3 = settled_memory(),
    Beam = maps:get(<<"beam">>, headcount:stats(N), #{}),
    [exit(P, kill) || P <- Users],
    [wait_dead(P) || P <- Users],
    PerMon = (M1 - M0) / ?MEM_N,
    PerTracked = (M3 - M2) / ?MEM_N,
    io:format("  ~-40s ~7.1f B  (~b monitors)~n", ["BEAM memory per plain monitor", PerMon, ?MEM_N]),
    io:format("  ~-40s ~7.1f B  (~b processes; stats says ~p B)~n",
              ["BEAM memory per tracked process", PerTracked, ?MEM_N,
               maps:get(<<"bytes_per_process">>, Beam, unknown)]),
    io:format("RESULT mem_monitor ~.1f~nRESULT mem_tracked ~.1f~n", [PerMon, PerTracked]).

settled_memory() ->
    [erlang:garbage_collect(P) || P <- processes()],
    timer:sleep(100),  % let the targets take their monitor signals
    [erlang:garbage_collect(P) || P <- processes()],
    erlang:memory(total).

loadavg() ->
    case file:read_file("/proc/loadavg") of
        {ok, B} -> binary_to_list(hd(string:split(B, " ")));
        _ -> "?"
    end.

median(L) -> lists:nth((length(L) + 1) div 2, lists:sort(L)).

cpu_result(Key, What, Ns) ->
    io:format("  ~-40s ~7.1f ns CPU per call, the targets' work included~n", [What, Ns]),
    io:format("RESULT ~s ~f~n", [Key, float(Ns)]).

result(Key, What, Ops, Us, Unit) ->
    Rate = Ops / (max(Us, 1) / 1.0e6),
    io:format("  ~-40s ~7.3f M ~-10s (~b in ~.1f ms, median of ~b)~n",
              [What, Rate / 1.0e6, Unit, Ops, Us / 1000, ?RUNS]),
    io:format("RESULT ~s ~f~n", [Key, Rate]).

%% -------------------------------------------------------------------------
%% Parent: ratios

parse(Out) ->
    [{list_to_atom(K), list_to_float(V)}
     || Line <- string:split(Out, "\n", all),
        [<<"RESULT">>, K0, V0] <- [string:split(unicode:characters_to_binary(Line), " ", all)],
        K <- [binary_to_list(K0)], V <- [binary_to_list(V0)]].

summary(Results) ->
    Get = fun(S, K) -> [proplists:get_value(K, R) || {S1, R} <- Results, S1 =:= S] end,
    Range = fun(L) -> io_lib:format("~.2f-~.2f", [lists:min(L), lists:max(L)]) end,
    Ratio = fun(S, A, B) -> Range([X / Y || {X, Y} <- lists:zip(Get(S, A), Get(S, B))]) end,
    HasBase = lists:all(fun is_number/1, Get(1, first_base) ++ Get(2, first_base)),
    io:format("~nsummary over ~b VMs per scheduler count (each ratio within one VM):~n", [?ROUNDS]),
    lists:foreach(
      fun(S) ->
              io:format("  +S ~b: first track rate / monitor+demonitor rate = ~s (drivers' loop); "
                        "by CPU with the targets' work = ~s~n",
                        [S, Ratio(S, first, mon), Ratio(S, mon_cpu, first_cpu)]),
              HasBase andalso
                  io:format("  +S ~b: this NIF / base NIF, rate: first track ~s, tracked-process track ~s; "
                            "by CPU: ~s, ~s~n",
                            [S, Ratio(S, first, first_base), Ratio(S, again, again_base),
                             Ratio(S, first_base_cpu, first_cpu), Ratio(S, again_base_cpu, again_cpu)])
      end, [1, 2]),
    Scale = fun(K) -> Range([B / A || {A, B} <- lists:zip(Get(1, K), Get(2, K))]) end,
    io:format("  +S 2 / +S 1 rate (VMs run one after the other): first track ~s, tracked-process track ~s, "
              "monitor+demonitor ~s~n", [Scale(first), Scale(again), Scale(mon)]),
    MemM = Get(1, mem_monitor) ++ Get(2, mem_monitor),
    MemT = Get(1, mem_tracked) ++ Get(2, mem_tracked),
    io:format("  BEAM memory per tracked process / per plain monitor = ~s~n",
              [Range([T / M || {T, M} <- lists:zip(MemT, MemM)])]).

%% -------------------------------------------------------------------------
%% The change feed

-define(WATCH_TOPICS, 1000000).
-define(PER_FLUSH, 10000).
-define(WATCH_RUNS, 5).

%% One watch on all of 1M topics, per change delivered as an Erlang message
%% (medians of ?WATCH_RUNS), beside an Erlang process sending the same
%% message (built from the same binaries) to the same receiver. Each is
%% timed by the wall clock and by CPU time (Linux schedstat): of the whole
%% VM (every thread: schedulers, the library's flusher, the NIF's delivery
%% thread) and of the delivery thread alone. On a shared machine the CPU
%% figures are the ones to compare.
%%
%%   initial          watch(..., #{initial => true}) to its 1M-change
%%                    message received: the library's scan, the NIF thread
%%                    building and sending the terms, the receive.
%%   Erlang send      a process builds [{Topic, Count, Users}] of 1M and
%%                    sends it: the floor of any message of that shape.
%%   churn            ?PER_FLUSH topics change per round (a second process
%%                    joins them, 1 -> 2, or leaves them again, 2 -> 1;
%%                    flush_interval_ms 1), from the first call to the last
%%                    change received.
%%   calls alone      the same rounds with no watch: what the calls cost.
%%   churn - calls    what delivering each change costs on top.
watch_bench() ->
    io:format("~nheadcount ~s change feed bench: OTP ~s, ~b scheduler(s), ~b CPUs, load ~s, ~s~n",
              [headcount:version(), erlang:system_info(otp_release), erlang:system_info(schedulers_online),
               erlang:system_info(logical_processors_available), loadavg(), get(lib)]),
    {ok, N} = headcount:start(#{flush_interval_ms => 1}),
    {ok, Warm} = headcount:watch(N, <<"warm">>), % starts the delivery thread
    Topics = list_to_tuple([iolist_to_binary(io_lib:format("room:~7..0b", [I]))
                            || I <- lists:seq(1, ?WATCH_TOPICS)]),
    User = spawn(fun idle/0),
    each(Topics, fun(_, T) -> ok = headcount:track(N, T, User) end),
    Initial = [measured(fun() -> watch_initial(N) end) || _ <- lists:seq(1, ?WATCH_RUNS)],
    Send = [measured(fun() -> erlang_send(Topics) end) || _ <- lists:seq(1, ?WATCH_RUNS)],
    {ok, W} = headcount:watch(N, <<>>),
    drain(W, 200),
    Other = spawn(fun idle/0),
    Churn = [measured(fun() -> churn_round(N, Topics, Other, R, W) end) || R <- lists:seq(1, 2 * ?WATCH_RUNS)],
    ok = headcount:unwatch(N, W),
    Calls = [measured(fun() -> churn_round(N, Topics, Other, R, none) end) || R <- lists:seq(1, 2 * ?WATCH_RUNS)],
    Per = fun(Runs, K, I) -> median([element(I, R) || R <- Runs]) / K end,
    Line = fun(What, Runs, K) ->
                   io:format("  ~-42s ~8.1f ~8.1f ~8.1f~n",
                             [What, Per(Runs, K, 1) * 1000, Per(Runs, K, 2), Per(Runs, K, 3)])
           end,
    io:format("  ~-42s ~8s ~8s ~8s   (ns per change)~n", ["", "wall", "VM CPU", "thread"]),
    Line("initial, 1M topics (watch to message)", Initial, ?WATCH_TOPICS),
    Line("Erlang send of the same 1M-entry list", Send, ?WATCH_TOPICS),
    Line("churn, 10k changes per round", Churn, ?PER_FLUSH),
    Line("  the same calls, no watch", Calls, ?PER_FLUSH),
    io:format("  initial / Erlang send (VM CPU): ~.2f~n", [Per(Initial, 1, 2) / Per(Send, 1, 2)]),
    io:format("  churn - calls (VM CPU): ~.1f ns per delivered change (goal <= 1000)~n",
              [Per(Churn, ?PER_FLUSH, 2) - Per(Calls, ?PER_FLUSH, 2)]),
    ok = headcount:unwatch(N, Warm),
    exit(User, kill),
    exit(Other, kill),
    ok = headcount:stop(N).

%% Runs Fun: {wall microseconds, CPU ns of the VM, CPU ns of the NIF's
%% delivery thread}.
measured(Fun) ->
    {ok, All} = file:list_dir("/proc/self/task"),
    Delivery = [T || T <- All, file:read_file("/proc/self/task/" ++ T ++ "/comm") =:= {ok, <<"headcount_watch\n">>}],
    C0 = cpu_ns(All),
    D0 = cpu_ns(Delivery),
    T0 = erlang:monotonic_time(microsecond),
    Fun(),
    Us = erlang:monotonic_time(microsecond) - T0,
    {Us, cpu_ns(All) - C0, cpu_ns(Delivery) - D0}.

watch_initial(N) ->
    {ok, W} = headcount:watch(N, <<>>, #{initial => true}),
    K = receive {headcount_changes, W, L} -> length(L) after 60000 -> error(no_initial_batch) end,
    ?WATCH_TOPICS = K,
    ok = headcount:unwatch(N, W).

erlang_send(Topics) ->
    Self = self(),
    spawn(fun() -> Self ! {changes, self(), [{T, 1, 1} || T <- tuple_to_list(Topics)]} end),
    K = receive {changes, _, L} -> length(L) end,
    ?WATCH_TOPICS = K.
%% Round R changes ?PER_FLUSH topics: in odd rounds User joins a range of
%% them, in even rounds it leaves it again. With a watch W, waits until
%% ?PER_FLUSH changes to the round's new count were delivered (counts
%% alternate between 2 and 1, so no other round's change has that count;
%% the receiver only counts, as the floor of any consumer).
churn_round(N, Topics, User, R, W) ->
    First = ((R - 1) div 2 * ?PER_FLUSH) rem (?WATCH_TOPICS - ?PER_FLUSH),
    Range = [element(First + J, Topics) || J <- lists:seq(1, ?PER_FLUSH)],
    {Call, Want} = case R rem 2 of
                       1 -> {fun(T) -> ok = headcount:track(N, T, User) end, 2};
                       0 -> {fun(T) -> ok = headcount:untrack(N, T, User) end, 1}
                   end,
    lists:foreach(Call, Range),
    case W of
        none -> ok;
        _ -> ?PER_FLUSH = await(W, Want, 0)
    end.

await(_W, _Want, K) when K >= ?PER_FLUSH -> K;
await(W, Want, K) ->
    receive
        {headcount_changes, W, L} -> await(W, Want, K + length([1 || {_, C, _} <- L, C =:= Want]))
    after 60000 ->
        error({not_delivered, ?PER_FLUSH - K})
    end.

drain(W, Ms) ->
    receive {headcount_changes, W, _} -> drain(W, Ms) after Ms -> ok end.
