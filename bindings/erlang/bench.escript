#!/usr/bin/env escript
%% -*- erlang -*-
%%
%% Tracks per second through the headcount NIF, from 1 and from 2
%% schedulers, beside Phoenix.Tracker's 17-41k tracks/s on this machine.
%%
%%   make bench                       # builds against the release library
%%   ./bench.escript                  # runs +S 1 and +S 2 (each in a fresh VM)
%%   ERL_FLAGS="+S 4" ./bench.escript --here   # one run in this VM
%%
%% The shape is Phoenix's: many processes (channel processes), each in a few
%% topics (rooms), the topics shared by many processes. One worker process
%% per scheduler drives its own share of 20,000 idle "user" processes:
%%
%%   track/3, new process    the first track of each user (home room): the
%%                           NIF creates a monitor and the pid's state.
%%   track/3, tracked process each user joins 4 more rooms (10,000 rooms in
%%                           all): the steady-state track.
%%   untrack/3               ... and leaves them again; 5 rounds, median.
%%   track/2 + untrack/2     the worker (tracked in a home room, as a
%%                           channel process is) joins and leaves 4 rooms
%%                           itself, in a loop (2 calls per iteration).
%%   deaths                  every user is killed; the down callback
%%                           untracks it from all its rooms.
-mode(compile).

-define(USERS, 20000).     % per worker
-define(ROOMS, 10000).
-define(JOINS, 4).         % extra rooms per user
-define(ROUNDS, 5).
-define(SELF_LOOPS, 100000).
-define(PHOENIX, "Phoenix.Tracker: 17-41k tracks/s").

main(["--here"]) ->
    setup(),
    run();
main([]) ->
    setup(),
    Script = escript:script_name(),
    lists:foreach(
      fun(S) ->
              Cmd = "ERL_FLAGS='+S " ++ integer_to_list(S) ++ "' " ++ Script ++ " --here 2>&1",
              io:put_chars(os:cmd(Cmd))
      end, [1, 2]);
main(_) ->
    io:format("usage: bench.escript [--here]~n"),
    halt(2).

setup() ->
    Dir = filename:dirname(filename:absname(escript:script_name())),
    true = code:add_patha(filename:join(Dir, "ebin")),
    Lib = case file:read_file(filename:join([Dir, "priv", ".hc_lib"])) of
              {ok, Path} -> string:trim(Path);
              _ -> <<"unknown">>
          end,
    put(lib, Lib),
    {module, headcount} = code:ensure_loaded(headcount).

run() ->
    S = erlang:system_info(schedulers_online),
    Lib = get(lib),
    io:format("~nheadcount ~s NIF bench: OTP ~s, ~b scheduler(s) online, ~b CPUs, ~s~n",
              [headcount:version(), erlang:system_info(otp_release), S,
               erlang:system_info(logical_processors_available), Lib]),
    case binary:match(Lib, <<"/debug/">>) of
        nomatch -> ok;
        _ -> io:format("  WARNING: linked against a debug build of the library; run 'make bench'~n")
    end,
    {ok, N} = headcount:start(#{flush_interval_ms => 100}),
    Rooms = list_to_tuple([<<"room:", (integer_to_binary(I))/binary>> || I <- lists:seq(1, ?ROOMS)]),
    Users = list_to_tuple([list_to_tuple([spawn(fun() -> receive stop -> ok end end)
                                          || _ <- lists:seq(1, ?USERS)])
                           || _ <- lists:seq(1, S)]),
    %% Home rooms are the first half, the rooms users join the second.
    Half = ?ROOMS div 2,
    Home = fun(I) -> element(I rem Half + 1, Rooms) end,
    Room = fun(I) -> element(Half + I rem Half + 1, Rooms) end,
    Each = fun(W, F) -> each(element(W, Users), 1, F) end,

    %% First track of each user: monitor + state.
    {NewUs, _} = parallel(S, fun(W) -> Each(W, fun(I, P) -> ok = headcount:track(N, Home(I * 7919), P) end) end),
    check(N, S * ?USERS),
    line("track/3, new process (monitor)", S * ?USERS, NewUs, "tracks/s", ?PHOENIX),

    %% Steady state: join and leave ?JOINS more rooms, in rounds.
    Join = fun(W) -> Each(W, fun(I, P) -> join(N, Room, I, P, ?JOINS) end) end,
    Leave = fun(W) -> Each(W, fun(I, P) -> leave(N, Room, I, P, ?JOINS) end) end,
    Rounds = [begin
                  {T, _} = parallel(S, Join),
                  check(N, S * ?USERS * (1 + ?JOINS)),
                  {U, _} = parallel(S, Leave),
                  check(N, S * ?USERS),
                  {T, U}
              end || _ <- lists:seq(1, ?ROUNDS)],
    Ops = S * ?USERS * ?JOINS,
    line("track/3, tracked process", Ops, median([T || {T, _} <- Rounds]), "tracks/s", ?PHOENIX),
    line("untrack/3", Ops, median([U || {_, U} <- Rounds]), "untracks/s", ""),

    %% The worker itself joining and leaving rooms.
    SelfRuns = [element(1, parallel(S, fun(W) -> self_loop(N, Room, W * 1000, ?SELF_LOOPS) end))
                || _ <- lists:seq(1, ?ROUNDS)],
    line("track/2 + untrack/2 (self)", S * ?SELF_LOOPS * 2, median(SelfRuns), "calls/s", ?PHOENIX),

    %% Deaths (the workers' home rooms stay).
    Base = headcount:total(N) - S * ?USERS,
    T0 = erlang:monotonic_time(microsecond),
    [exit(P, kill) || Ps <- tuple_to_list(Users), P <- tuple_to_list(Ps)],
    wait_total(N, Base),
    DeathUs = erlang:monotonic_time(microsecond) - T0,
    line("tracked process killed -> untracked", S * ?USERS, DeathUs, "deaths/s", ""),
    ok = headcount:stop(N).

each(Ps, I, _F) when I > tuple_size(Ps) -> ok;
each(Ps, I, F) -> F(I, element(I, Ps)), each(Ps, I + 1, F).

join(_, _, _, _, 0) -> ok;
join(N, Room, I, P, K) -> ok = headcount:track(N, Room(I + K * 13), P), join(N, Room, I, P, K - 1).

leave(_, _, _, _, 0) -> ok;
leave(N, Room, I, P, K) -> ok = headcount:untrack(N, Room(I + K * 13), P), leave(N, Room, I, P, K - 1).

self_loop(N, Room, Base, K) when K =:= ?SELF_LOOPS ->
    Home = <<"worker:", (integer_to_binary(Base))/binary>>,
    _ = headcount:track(N, Home),  % ok, or already_tracked after round 1
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

%% Runs Fun(W) in worker W for W in 1..S at once; returns the wall time
%% from the start signal to the last finish, in microseconds. The workers
%% live for the whole bench: a worker that exited would be untracked.
parallel(S, Fun) ->
    Workers = workers(S),
    erlang:garbage_collect(),
    T0 = erlang:monotonic_time(microsecond),
    [P ! {run, self(), W, Fun} || {W, P} <- Workers],
    Rs = [receive {done, P, R} -> R end || {_, P} <- Workers],
    {erlang:monotonic_time(microsecond) - T0, Rs}.

workers(S) ->
    case get(workers) of
        undefined ->
            Ws = [{W, spawn_opt(fun worker/0, [link, {min_heap_size, 4096}])} || W <- lists:seq(1, S)],
            put(workers, Ws),
            Ws;
        Ws ->
            Ws
    end.

worker() ->
    receive
        {run, From, W, Fun} ->
            From ! {done, self(), Fun(W)},
            worker()
    end.

wait_total(N, Want) ->
    case headcount:total(N) of
        Want -> ok;
        _ -> erlang:yield(), wait_total(N, Want)
    end.

median(L) -> lists:nth((length(L) + 1) div 2, lists:sort(L)).

line(What, Ops, Us, Unit, Beside) ->
    Rate = Ops / (max(Us, 1) / 1.0e6),
    io:format("  ~-36s ~7.2f M ~-10s (~b in ~.1f ms)  ~s~n",
              [What, Rate / 1.0e6, Unit, Ops, Us / 1000, bracket(Beside)]).

bracket("") -> "";
bracket(S) -> "[" ++ S ++ "]".
