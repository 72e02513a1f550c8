%% EUnit suite of the change feed (watch/2,3, unwatch/2) and top/3.
-module(headcount_watch_tests).

-include_lib("eunit/include/eunit.hrl").

%% -------------------------------------------------------------------------
%% Helpers

start() ->
    {ok, N} = headcount:start(#{flush_interval_ms => 20}),
    N.

idle() ->
    spawn(fun() -> receive stop -> ok end end).

%% Folds messages of watch Ref into Seen (a map topic => count) until
%% Cond(Seen) holds; fails after 10 s. Checks every message's form.
until(Ref, Seen, Cond) ->
    case Cond(Seen) of
        true -> Seen;
        false ->
            receive
                {headcount_changes, Ref, Changes} -> until(Ref, fold(Changes, Seen), Cond)
            after 10000 ->
                error({not_seen, Seen})
            end
    end.

fold(Changes, Seen) ->
    ?assert(is_list(Changes) andalso Changes =/= []),
    Topics = [T || {T, _, _} <- Changes],
    ?assertEqual(length(Topics), length(lists:usort(Topics))), % each topic once
    lists:foldl(fun({T, C, U}, Acc) when is_binary(T), is_integer(C), C >= 0 ->
                        ?assertEqual(C, U), % no distinct-user counting yet
                        Acc#{T => C}
                end, Seen, Changes).

has(Pairs) ->
    fun(Seen) -> lists:all(fun({T, C}) -> maps:find(T, Seen) =:= {ok, C} end, Pairs) end.

%% No message of watch Ref for Ms.
quiet(Ref, Ms) ->
    receive {headcount_changes, Ref, _} = M -> error({unexpected, M}) after Ms -> ok end.

watches(Node) ->
    maps:get(<<"watches">>, headcount:stats(Node)).

open_fds() ->
    {ok, Fds} = file:list_dir("/proc/self/fd"),
    length(Fds).

os_threads() ->
    {ok, Tasks} = file:list_dir("/proc/self/task"),
    length(Tasks).

wait_until(Fun) -> wait_until(Fun, erlang:monotonic_time(millisecond) + 10000).
wait_until(Fun, Deadline) ->
    case Fun() of
        true -> ok;
        false ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> error({timeout_waiting, erlang:fun_info(Fun, name)});
                false -> timer:sleep(5), wait_until(Fun, Deadline)
            end
    end.

%% -------------------------------------------------------------------------
%% Tests

message_format_test() ->
    N = start(),
    {ok, Ref} = headcount:watch(N, <<"room:">>),
    ?assert(is_reference(Ref)),
    P = idle(),
    ok = headcount:track(N, <<"room:1">>, P),
    ok = headcount:track(N, <<"room:1">>),
    receive
        {headcount_changes, Ref, Changes} ->
            %% both tracks in one flush: one entry, the latest count
            ?assertMatch([{<<"room:1">>, _, _}], Changes),
            Seen = until(Ref, fold(Changes, #{}), has([{<<"room:1">>, 2}])),
            ?assertEqual(#{<<"room:1">> => 2}, Seen)
    after 10000 -> error(no_message)
    end,
    ok = headcount:unwatch(N, Ref),
    P ! stop,
    ok = headcount:stop(N).

initial_test() ->
    N = start(),
    {ok, All} = headcount:watch(N, <<>>), % tells when the tracks were flushed
    Ps = [idle() || _ <- lists:seq(1, 3)],
    [P1, P2, P3] = Ps,
    ok = headcount:track(N, <<"a:1">>, P1),
    ok = headcount:track(N, <<"a:1">>, P2),
    ok = headcount:track(N, <<"a:2">>, P3),
    ok = headcount:track(N, <<"b">>, P3),
    ok = headcount:track(N, <<"a:3">>, P1),
    ok = headcount:untrack(N, <<"a:3">>, P1), % at zero: not in the initial batch
    until(All, #{}, has([{<<"a:1">>, 2}, {<<"a:2">>, 1}, {<<"b">>, 1}])),
    {ok, Init} = headcount:watch(N, <<"a:">>, #{initial => true}),
    receive
        {headcount_changes, Init, Changes} ->
            ?assertEqual([{<<"a:1">>, 2, 2}, {<<"a:2">>, 1, 1}], lists:sort(Changes))
    after 10000 -> error(no_initial_batch)
    end,
    {ok, NoInit} = headcount:watch(N, <<"a:">>, #{initial => false}),
    {ok, Default} = headcount:watch(N, <<"a:">>),
    quiet(NoInit, 150),
    quiet(Default, 0),
    quiet(Init, 0),
    [P ! stop || P <- Ps],
    ok = headcount:stop(N).

prefix_and_final_zero_test() ->
    N = start(),
    {ok, Rooms} = headcount:watch(N, [<<"ro">>, "om:"]), % iodata prefix
    {ok, All} = headcount:watch(N, <<>>),
    P = idle(),
    Q = idle(),
    ok = headcount:track(N, <<"room:1">>, P),
    ok = headcount:track(N, <<"room:1">>, Q),
    ok = headcount:track(N, <<"lobby">>, P),
    R1 = until(Rooms, #{}, has([{<<"room:1">>, 2}])),
    A1 = until(All, #{}, has([{<<"room:1">>, 2}, {<<"lobby">>, 1}])),
    exit(P, kill),
    exit(Q, kill),
    R2 = until(Rooms, R1, has([{<<"room:1">>, 0}])), % a final 0 is delivered
    until(All, A1, has([{<<"room:1">>, 0}, {<<"lobby">>, 0}])),
    quiet(Rooms, 100),
    ?assertNot(maps:is_key(<<"lobby">>, R2)),
    ok = headcount:stop(N).

unwatch_stops_messages_test() ->
    N = start(),
    {ok, Ref} = headcount:watch(N, <<>>),
    ?assertEqual(1, watches(N)),
    ok = headcount:track(N, <<"t1">>),
    timer:sleep(200), % the batch is in the mailbox, unread
    ok = headcount:unwatch(N, Ref),
    {messages, Msgs} = process_info(self(), messages),
    ?assertEqual([], [M || {headcount_changes, R, _} = M <- Msgs, R =:= Ref]), % flushed
    ok = headcount:track(N, <<"t2">>),
    quiet(Ref, 200),
    ok = headcount:unwatch(N, Ref), % idempotent
    wait_until(fun() -> watches(N) =:= 0 end),
    ok = headcount:stop(N).

%% A watch whose owner exits ends: its library watch (and fd) is freed.
owner_death_ends_the_watch_test_() ->
    {timeout, 60, fun owner_death_ends_the_watch/0}.

owner_death_ends_the_watch() ->
    N = start(),
    {ok, Warm} = headcount:watch(N, <<"warm">>), % starts the node's delivery thread
    Fds0 = open_fds(),
    Threads0 = os_threads(),
    Self = self(),
    Owners = [spawn(fun() ->
                            {ok, R} = headcount:watch(N, <<"x">>, #{initial => true}),
                            Self ! {watching, self(), R},
                            receive stop -> ok end
                    end) || _ <- lists:seq(1, 50)],
    [receive {watching, O, _} -> ok after 10000 -> error(no_watch) end || O <- Owners],
    ?assertEqual(51, watches(N)),
    ?assert(open_fds() >= Fds0 + 50),
    ?assertEqual(Threads0, os_threads()), % no thread per watch
    [exit(O, kill) || O <- lists:sublist(Owners, 25)],
    [O ! stop || O <- lists:nthtail(25, Owners)],
    wait_until(fun() -> watches(N) =:= 1 end),
    wait_until(fun() -> open_fds() =:= Fds0 end),
    ok = headcount:unwatch(N, Warm),
    wait_until(fun() -> watches(N) =:= 0 end),
    ok = headcount:stop(N).

%% stop ends every watch, joins the delivery thread and frees the fds.
stop_ends_watches_test() ->
    Fds0 = open_fds(),
    Threads0 = os_threads(),
    N = start(),
    {ok, Ref} = headcount:watch(N, <<>>),
    [{ok, _} = headcount:watch(N, <<"p">>) || _ <- lists:seq(1, 20)],
    ok = headcount:track(N, <<"t">>),
    ok = headcount:stop(N),
    wait_until(fun() -> open_fds() =:= Fds0 andalso os_threads() =:= Threads0 end),
    ?assertEqual({error, closed}, headcount:unwatch(N, Ref)),
    ?assertEqual({error, closed}, headcount:watch(N, <<>>)),
    ?assertEqual({error, closed}, headcount:top(N, 1, <<>>)),
    flush_all().

flush_all() ->
    receive {headcount_changes, _, _} -> flush_all() after 0 -> ok end.

argument_errors_test() ->
    N = start(),
    M = start(),
    ?assertError(badarg, headcount:watch(N, 42)),
    ?assertError(badarg, headcount:watch(N, <<>>, #{initial => yes})),
    ?assertError(badarg, headcount:watch(N, <<>>, #{inital => true})),
    ?assertError(badarg, headcount:watch(N, <<>>, [initial])),
    ?assertError(badarg, headcount:watch(make_ref(), <<>>)),
    ?assertEqual({error, invalid_topic}, headcount:watch(N, binary:copy(<<"p">>, 1025))),
    {ok, Ref} = headcount:watch(N, <<>>),
    ?assertError(badarg, headcount:unwatch(N, make_ref())),
    ?assertError(badarg, headcount:unwatch(N, N)),
    ?assertError(badarg, headcount:unwatch(M, Ref)), % a watch of another node
    ?assertError(badarg, headcount:top(N, -1, <<>>)),
    ?assertError(badarg, headcount:top(N, one, <<>>)),
    ?assertError(badarg, headcount:top(N, 1, 7)),
    ?assertEqual({error, invalid_topic}, headcount:top(N, 1, binary:copy(<<"p">>, 1025))),
    ?assertEqual([], headcount:top(N, 0, <<>>)),
    ok = headcount:unwatch(N, Ref),
    ok = headcount:stop(M),
    ok = headcount:stop(N).

top_against_brute_force_test() ->
    N = start(),
    rand:seed(exsss, {14, 14, 14}),
    Topics = [iolist_to_binary([lists:nth(I rem 3 + 1, ["room:", "lobby:", "ro"]), integer_to_list(I)])
              || I <- lists:seq(1, 200)],
    Ps = [idle() || _ <- lists:seq(1, 60)],
    [headcount:track(N, lists:nth(rand:uniform(200), Topics), P) || P <- Ps, _ <- lists:seq(1, 20)],
    [exit(P, kill) || P <- lists:sublist(Ps, 10)], % some topics back at zero
    wait_until(fun() -> maps:get(<<"processes">>, maps:get(<<"beam">>, headcount:stats(N))) =:= 50 end),
    Brute = fun(K, Prefix) ->
                    All = [{T, C} || T <- Topics, (C = headcount:count(N, T)) > 0,
                                     binary:longest_common_prefix([T, Prefix]) =:= byte_size(Prefix)],
                    lists:sublist(lists:sort(fun({T1, C1}, {T2, C2}) -> {-C1, T1} =< {-C2, T2} end, All), K)
            end,
    [?assertEqual(Brute(K, P), headcount:top(N, K, P))
     || K <- [1, 10, 50, 1000], P <- [<<>>, <<"room:">>, <<"ro">>, <<"nothing">>]],
    [P ! stop || P <- Ps],
    ok = headcount:stop(N).

%% Random tracks, untracks and deaths by many processes; once they stop,
%% every watch's last value per topic equals count/2.
churn_consistency_test_() ->
    {timeout, 60, fun churn_consistency/0}.

churn_consistency() ->
    N = start(),
    {ok, All} = headcount:watch(N, <<>>),
    {ok, Even} = headcount:watch(N, <<"t:0">>),
    Topics = [<<"t:", (integer_to_binary(I rem 2))/binary, (integer_to_binary(I))/binary>>
              || I <- lists:seq(1, 30)],
    Self = self(),
    Workers = [spawn(fun() ->
                             rand:seed(exsss, {W, W, W}),
                             [case rand:uniform(3) of
                                  1 -> headcount:track(N, lists:nth(rand:uniform(30), Topics));
                                  2 -> headcount:untrack(N, lists:nth(rand:uniform(30), Topics));
                                  3 -> timer:sleep(rand:uniform(3))
                              end || _ <- lists:seq(1, 300)],
                             Self ! {done, self()},
                             receive stop -> ok end
                     end) || W <- lists:seq(1, 20)],
    [receive {done, W} -> ok end || W <- Workers],
    [exit(W, kill) || W <- lists:sublist(Workers, 10)],
    wait_until(fun() -> maps:get(<<"processes">>, maps:get(<<"beam">>, headcount:stats(N))) =:= 10 end),
    Want = maps:from_list([{T, headcount:count(N, T)} || T <- Topics]),
    Matches = fun(Prefix) -> fun(Seen) ->
        maps:filter(fun(T, C) -> C > 0 orelse maps:is_key(T, Seen) end,
                    maps:filter(fun(T, _) -> binary:part(T, 0, byte_size(Prefix)) =:= Prefix end, Want))
            =:= maps:filter(fun(T, _) -> binary:part(T, 0, byte_size(Prefix)) =:= Prefix end, Seen)
        end end,
    SeenAll = until(All, #{}, Matches(<<>>)),
    SeenEven = until(Even, #{}, Matches(<<"t:0">>)),
    quiet(All, 100),
    ?assertEqual(maps:filter(fun(_, C) -> C > 0 end, Want), maps:filter(fun(_, C) -> C > 0 end, SeenAll)),
    ?assert(lists:all(fun(T) -> binary:part(T, 0, 3) =:= <<"t:0">> end, maps:keys(SeenEven))),
    [W ! stop || W <- Workers],
    ok = headcount:stop(N).

%% A watch on one node sees the other's tracks, and their end when it leaves.
two_nodes_test_() ->
    {timeout, 60, fun two_nodes/0}.

two_nodes() ->
    Base = #{secret => <<"watch-secret">>, flush_interval_ms => 20, down_after_ms => 500},
    {ok, A} = headcount:start(Base#{node_name => <<"a">>, listen => <<"127.0.0.1:0">>}),
    {ok, B} = headcount:start(Base#{node_name => <<"b">>, listen => <<"127.0.0.1:0">>,
                                    seeds => [headcount:local_addr(A)]}),
    {ok, Ref} = headcount:watch(A, <<"room:">>, #{initial => true}),
    ok = headcount:track(A, <<"room:1">>),
    Ps = [idle() || _ <- lists:seq(1, 3)],
    [ok = headcount:track(B, T, P) || P <- Ps, T <- [<<"room:1">>, <<"room:2">>, <<"other">>]],
    S1 = until(Ref, #{}, has([{<<"room:1">>, 4}, {<<"room:2">>, 3}])),
    ?assertEqual([{<<"room:1">>, 4}, {<<"room:2">>, 3}], headcount:top(A, 10, <<"room:">>)),
    ok = headcount:stop(B), % graceful leave: A drops B's counts at once
    S2 = until(Ref, S1, has([{<<"room:1">>, 1}, {<<"room:2">>, 0}])),
    ?assertNot(maps:is_key(<<"other">>, S2)),
    [P ! stop || P <- Ps],
    ok = headcount:stop(A).

%% stop while processes watch, unwatch, die and track: no crash, every call
%% after the stop answers {error, closed}, the thread and fds are gone.
stop_races_watches_test_() ->
    {timeout, 60, fun stop_races_watches/0}.

stop_races_watches() ->
    Fds0 = open_fds(),
    Threads0 = os_threads(),
    N = start(),
    Self = self(),
    Loop = fun Loop(K) ->
                   case headcount:watch(N, <<"r">>, #{initial => K rem 2 =:= 0}) of
                       {ok, R} ->
                           _ = headcount:track(N, <<"r", (integer_to_binary(K rem 7))/binary>>),
                           case K rem 3 of
                               0 -> ok;  % left to the owner's exit or the stop
                               _ -> true = lists:member(headcount:unwatch(N, R), [ok, {error, closed}])
                           end,
                           Loop(K + 1);
                       {error, closed} ->
                           Self ! {closed, self()}
                   end
           end,
    Workers = [spawn(fun() -> Loop(W) end) || W <- lists:seq(1, 8)],
    Dying = [spawn(fun() -> {ok, _} = headcount:watch(N, <<>>), receive after infinity -> ok end end)
             || _ <- lists:seq(1, 20)],
    timer:sleep(100),
    [exit(D, kill) || D <- lists:sublist(Dying, 10)],
    ok = headcount:stop(N),
    [receive {closed, W} -> ok after 10000 -> error({worker_stuck, W}) end || W <- Workers],
    [exit(D, kill) || D <- Dying],
    wait_until(fun() -> open_fds() =:= Fds0 andalso os_threads() =:= Threads0 end),
    flush_all().

%% A node handle garbage collected with live watches: its destructor ends
%% them and joins the delivery thread.
garbage_collected_node_with_watches_test_() ->
    {timeout, 60, fun garbage_collected_node_with_watches/0}.

garbage_collected_node_with_watches() ->
    Fds0 = open_fds(),
    Threads0 = os_threads(),
    Self = self(),
    {Pid, Mon} = spawn_monitor(fun() ->
                                       N = start(),
                                       {ok, _} = headcount:watch(N, <<>>),
                                       {ok, _} = headcount:watch(N, <<"a">>, #{initial => true}),
                                       ok = headcount:track(N, <<"a">>),
                                       Self ! watching,
                                       receive stop -> ok end
                               end),
    receive watching -> ok after 10000 -> error(no_watch) end,
    ?assert(os_threads() > Threads0),
    Pid ! stop,
    receive {'DOWN', Mon, _, _, _} -> ok end,
    erlang:garbage_collect(),
    wait_until(fun() -> erlang:garbage_collect(), open_fds() =:= Fds0 andalso os_threads() =:= Threads0 end).

%% unwatch (or the owner's death) right after watch, before the delivery
%% thread took the watch over: it is added, then removed, once each.
unwatch_right_after_watch_test_() ->
    {timeout, 60, fun unwatch_right_after_watch/0}.

unwatch_right_after_watch() ->
    N = start(),
    Self = self(),
    Workers = [spawn(fun() ->
                             [begin
                                  {ok, R} = headcount:watch(N, <<>>),
                                  ok = headcount:unwatch(N, R)
                              end || _ <- lists:seq(1, 500)],
                             [spawn(fun() -> {ok, _} = headcount:watch(N, <<>>) end) || _ <- lists:seq(1, 100)],
                             Self ! {done, self()}
                     end) || _ <- lists:seq(1, 4)],
    [receive {done, W} -> ok after 30000 -> error(stuck) end || W <- Workers],
    wait_until(fun() -> watches(N) =:= 0 end),
    ok = headcount:track(N, <<"still">>),
    {ok, R} = headcount:watch(N, <<"still">>, #{initial => true}),
    until(R, #{}, has([{<<"still">>, 1}])),
    ok = headcount:stop(N).
