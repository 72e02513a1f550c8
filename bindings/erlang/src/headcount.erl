%% @doc Exact cluster-wide counts of connected users per topic.
%%
%% A node is a handle (a NIF resource) over a headcount node started by
%% {@link start/1}. {@link track/2} counts the calling process in a topic;
%% the NIF monitors the process, so when it exits (normally or killed) it is
%% untracked from every topic at once, with no GenServer or ETS table in the
%% way. Every call except `start/1', `stop/1' and `add_peer/2' is a short
%% NIF call on a normal scheduler (microseconds); those three run on a dirty
%% I/O scheduler because they may start or join threads or resolve names.
%%
%% Topics are iodata (a binary, or an iolist such as `["room:", Id]'),
%% 1 to `max_topic_len' bytes (1024 by default).
%%
%% Errors: an argument of the wrong type raises `badarg'; otherwise failures
%% are returned as `{error, Reason}':
%% <ul>
%% <li>`closed': the node was stopped;</li>
%% <li>`invalid_topic': the topic is empty or longer than `max_topic_len';</li>
%% <li>`already_tracked' / `not_tracked' from track / untrack;</li>
%% <li>`noproc': `track/3' of a process that is not alive;</li>
%% <li>`{config, Message}', `{io, Message}', `{invalid_argument, Message}',
%%     `{panic, Message}': the library's message, as a binary.</li>
%% </ul>
-module(headcount).

-export([start/1, stop/1,
         track/2, track/3, untrack/2, untrack/3, untrack_all/2,
         count/2, count_local/2, count_info/2, total/1,
         watch/2, watch/3, unwatch/2, top/3,
         local_addr/1, add_peer/2, stats/1, stats_json/1, version/0]).

-on_load(init/0).

-export_type([node_handle/0, topic/0, config/0, error_reason/0, watch_ref/0, change/0]).

-opaque node_handle() :: reference().
-opaque watch_ref() :: reference().
-type change() :: {Topic :: binary(), Count :: non_neg_integer(), Users :: non_neg_integer()}.
-type topic() :: iodata().
-type config() :: #{config_key() => config_value()} | [{config_key(), config_value()}].
-type config_key() :: atom() | binary() | string().
-type config_value() :: binary() | string() | atom() | integer() | [binary() | string()].
-type error_reason() :: closed | invalid_topic | {config | io | invalid_argument | panic, binary()}.

-define(NOT_LOADED, erlang:nif_error({not_loaded, ?MODULE})).

%% What the runtime allocates for one process monitor owned by a NIF
%% resource (erlang:memory/1 before and after 100,000 of them; OTP 25,
%% x86_64). The EUnit suite checks stats/1 against a measurement.
-define(MONITOR_BYTES, 152).

%% -------------------------------------------------------------------------
%% Loading

init() ->
    erlang:load_nif(nif_path(), 0).

%% priv/headcount_nif next to this module's ebin, or code:priv_dir/1 when
%% installed as an application named headcount; HEADCOUNT_NIF overrides both.
nif_path() ->
    case os:getenv("HEADCOUNT_NIF") of
        Path when is_list(Path), Path =/= "" ->
            filename:rootname(Path, ".so");
        _ ->
            case code:priv_dir(headcount) of
                Dir when is_list(Dir) ->
                    filename:join(Dir, "headcount_nif");
                {error, _} ->
                    Ebin = filename:dirname(code:which(?MODULE)),
                    filename:join([filename:dirname(Ebin), "priv", "headcount_nif"])
            end
    end.

%% -------------------------------------------------------------------------
%% Nodes

%% @doc Starts a node. `Config' is a map or a list of `{Key, Value}' pairs
%% (a proplist, or an Elixir keyword list). Keys are atoms, binaries or
%% strings naming the library's configuration keys (every key of the
%% library's table, in the top-level README and `hc_config_set' in
%% `include/headcount.h': `node_name', `listen', `secret', ...); values are
%% binaries, strings, atoms or integers, and `seeds' may also be a list of
%% addresses. Unknown keys, bad values and a key given twice return
%% `{error, {config, Message}}'.
-spec start(config()) -> {ok, node_handle()} | {error, error_reason()}.
start(Config) when is_map(Config) ->
    start(maps:to_list(Config));
start(Config) when is_list(Config) ->
    KVs = lists:sort(pairs(Config)),
    case duplicate(KVs) of
        none ->
            _ = headcount_logger:ensure_started(),
            start_nif(KVs);
        Key -> {error, {config, <<"configuration key ", Key/binary, " is given twice">>}}
    end;
start(_) ->
    erlang:error(badarg).

pairs([{K, V} | T]) -> [{config_key(K), config_value(V)} | pairs(T)];
pairs([]) -> [];
pairs(_) -> erlang:error(badarg).

duplicate([{K, _}, {K, _} | _]) -> K;
duplicate([_ | T]) -> duplicate(T);
duplicate([]) -> none.

config_key(K) when is_atom(K) -> atom_to_binary(K, utf8);
config_key(K) when is_binary(K) -> K;
config_key(K) when is_list(K) -> chars(K);
config_key(_) -> erlang:error(badarg).

config_value(V) when is_binary(V) -> V;
config_value(V) when is_integer(V) -> integer_to_binary(V);
config_value(V) when is_atom(V) -> atom_to_binary(V, utf8);
config_value(V) when is_list(V) ->
    case io_lib:char_list(V) of
        true -> chars(V);   % a string (including "")
        false -> join([address(E) || E <- V])  % a list of addresses
    end;
config_value(_) -> erlang:error(badarg).

address(A) when is_binary(A) -> A;
address(A) when is_list(A) -> chars(A);
address(_) -> erlang:error(badarg).

chars(L) ->
    case unicode:characters_to_binary(L) of
        B when is_binary(B) -> B;
        _ -> erlang:error(badarg)
    end.

join([]) -> <<>>;
join([H | T]) -> iolist_to_binary([H | [[$,, E] || E <- T]]).

start_nif(_KVs) -> ?NOT_LOADED.

%% @doc Leaves the cluster and frees the node; idempotent. Later calls on the
%% node return `{error, closed}'. A node that is never stopped is freed when
%% it is garbage collected.
-spec stop(node_handle()) -> ok.
stop(_Node) -> ?NOT_LOADED.

%% -------------------------------------------------------------------------
%% Tracking

%% @doc Counts the calling process in `Topic' until it untracks or exits.
-spec track(node_handle(), topic()) -> ok | {error, already_tracked | error_reason()}.
track(_Node, _Topic) -> ?NOT_LOADED.

%% @doc Counts the local process `Pid' in `Topic' until it untracks or exits.
-spec track(node_handle(), topic(), pid()) -> ok | {error, already_tracked | noproc | error_reason()}.
track(_Node, _Topic, _Pid) -> ?NOT_LOADED.

%% @doc Stops counting the calling process in `Topic'.
-spec untrack(node_handle(), topic()) -> ok | {error, not_tracked | error_reason()}.
untrack(_Node, _Topic) -> ?NOT_LOADED.

%% @doc Stops counting `Pid' in `Topic'.
-spec untrack(node_handle(), topic(), pid()) -> ok | {error, not_tracked | error_reason()}.
untrack(_Node, _Topic, _Pid) -> ?NOT_LOADED.

%% @doc Stops counting `Pid' in every topic; returns how many it left (0
%% for a process that is not tracked). The process stays monitored until it
%% exits, so tracking it again costs no new monitor.
-spec untrack_all(node_handle(), pid()) -> non_neg_integer() | {error, error_reason()}.
untrack_all(_Node, _Pid) -> ?NOT_LOADED.

%% -------------------------------------------------------------------------
%% Reading

%% @doc The cluster-wide count: this node's exact count plus the last count
%% each live peer reported.
-spec count(node_handle(), topic()) -> non_neg_integer() | {error, error_reason()}.
count(_Node, _Topic) -> ?NOT_LOADED.

%% @doc This node's exact count.
-spec count_local(node_handle(), topic()) -> non_neg_integer() | {error, error_reason()}.
count_local(_Node, _Topic) -> ?NOT_LOADED.

%% @doc The count with its freshness and coverage.
-spec count_info(node_handle(), topic()) ->
    #{count := non_neg_integer(), local := non_neg_integer(),
      peers_reporting := non_neg_integer(), peers_known := non_neg_integer(),
      oldest_report_age_ms := non_neg_integer()} | {error, error_reason()}.
count_info(_Node, _Topic) -> ?NOT_LOADED.

%% @doc The sum of all counts across the cluster.
-spec total(node_handle()) -> non_neg_integer() | {error, error_reason()}.
total(_Node) -> ?NOT_LOADED.

%% -------------------------------------------------------------------------
%% The change feed

%% @equiv watch(Node, Prefix, #{})
-spec watch(node_handle(), iodata()) -> {ok, watch_ref()} | {error, error_reason()}.
watch(Node, Prefix) ->
    watch(Node, Prefix, #{}).

%% @doc Watches every topic that starts with `Prefix' (`<<>>': every topic).
%% The calling process then receives
%% `{headcount_changes, Ref, [{Topic, Count, Users}]}' (`Topic' a binary)
%% whenever matching topics' cluster-wide counts change: local tracks and
%% untracks (no later than the flush that ships them), peer reports, a peer
%% going down or leaving. A message names a topic once, with its latest
%% count; after changes stop, the last count received for every matching
%% topic is its `count/2' (0 for a topic that emptied). `Users' equals
%% `Count' until the library counts distinct users.
%%
%% Options: `initial => true' makes the first message hold every matching
%% topic whose count is non-zero. The watch ends with {@link unwatch/2},
%% when the calling process exits, or when the node stops. An unknown
%% option, or a prefix that is not iodata, raises `badarg'; a prefix over
%% `max_topic_len' returns `{error, invalid_topic}'.
%%
%% Messages are built and sent by a thread of the NIF's own (one per node),
%% never on a scheduler. A process that stops receiving accumulates one
%% message per flush in its mailbox: receive them.
-spec watch(node_handle(), iodata(), #{initial => boolean()}) ->
    {ok, watch_ref()} | {error, error_reason()}.
watch(Node, Prefix, Opts) when is_map(Opts) ->
    Flags = case maps:to_list(Opts) of
        [] -> 0;
        [{initial, false}] -> 0;
        [{initial, true}] -> 1;
        _ -> erlang:error(badarg)
    end,
    watch_nif(Node, Prefix, Flags);
watch(_Node, _Prefix, _Opts) ->
    erlang:error(badarg).

watch_nif(_Node, _Prefix, _Flags) -> ?NOT_LOADED.

%% @doc Ends the watch `Ref' of `Node'. No message for it is sent after this
%% returns, and the calling process's mailbox is flushed of those already
%% sent (when it is the process that called watch). Idempotent; `{error,
%% closed}' once the node is stopped (which ended the watch); `badarg' for
%% a `Ref' that is not a watch of `Node'.
-spec unwatch(node_handle(), watch_ref()) -> ok | {error, closed}.
unwatch(Node, Ref) ->
    case unwatch_nif(Node, Ref) of
        ok -> flush_changes(Ref);
        Error -> Error
    end.

flush_changes(Ref) ->
    receive
        {headcount_changes, Ref, _} -> flush_changes(Ref)
    after 0 ->
        ok
    end.

unwatch_nif(_Node, _Ref) -> ?NOT_LOADED.

%% @doc The `K' topics starting with `Prefix' (`<<>>': any) with the highest
%% cluster-wide counts, highest first, ties broken by topic bytes ascending;
%% topics at zero are not listed. Exact, by a scan of every topic (on a
%% dirty scheduler).
-spec top(node_handle(), non_neg_integer(), iodata()) ->
    [{binary(), non_neg_integer()}] | {error, error_reason()}.
top(_Node, _K, _Prefix) -> ?NOT_LOADED.

%% -------------------------------------------------------------------------
%% Cluster and introspection

%% @doc The address this node listens on, `<<"host:port">>', or `undefined'
%% for a node without `listen'.
-spec local_addr(node_handle()) -> binary() | undefined | {error, error_reason()}.
local_addr(_Node) -> ?NOT_LOADED.

%% @doc Connects to the node listening at `Addr' (`"host:port"').
-spec add_peer(node_handle(), iodata()) -> ok | {error, error_reason()}.
add_peer(_Node, _Addr) -> ?NOT_LOADED.

%% @doc The node's statistics as a map: the library's (JSON objects become
%% maps with binary keys, arrays lists, strings binaries, `null' the atom
%% `null'), plus `<<"beam">>', what this node costs the BEAM:
%% <ul>
%% <li>`processes': the processes it monitors (tracked, or untracked from
%%     every topic but still alive);</li>
%% <li>`monitor_bytes': the runtime's memory for their monitors
%%     (`processes' times ?MONITOR_BYTES, measured on OTP 25, 64-bit);</li>
%% <li>`pid_table_bytes': the NIF's table of those pids;</li>
%% <li>`bytes_per_process': the two together, per process;</li>
%% <li>`node_bytes': the NIF's fixed memory for the node.</li>
%% </ul>
%% The library's own memory (topics, counters) is outside the BEAM.
-spec stats(node_handle()) -> map() | {error, error_reason()}.
stats(Node) ->
    case stats_json(Node) of
        Json when is_binary(Json) ->
            case beam_memory(Node) of
                {Procs, Table, Fixed} ->
                    Monitors = Procs * ?MONITOR_BYTES,
                    (headcount_json:decode(Json))#{<<"beam">> =>
                        #{<<"processes">> => Procs, <<"monitor_bytes">> => Monitors,
                          <<"pid_table_bytes">> => Table, <<"node_bytes">> => Fixed,
                          <<"bytes_per_process">> => (Monitors + Table) div max(Procs, 1)}};
                Error ->
                    Error
            end;
        Error ->
            Error
    end.

beam_memory(_Node) -> ?NOT_LOADED.

%% @doc The node's statistics as the library's JSON text.
-spec stats_json(node_handle()) -> binary() | {error, error_reason()}.
stats_json(_Node) -> ?NOT_LOADED.

%% @doc The library's version.
-spec version() -> binary().
version() -> ?NOT_LOADED.
