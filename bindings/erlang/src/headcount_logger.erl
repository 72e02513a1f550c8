%% @doc The process that hands the library's log lines to OTP's `logger'.
%%
%% The NIF sends every log line of every node in this VM as
%% `{headcount_log, Level, Target, Node, Message}' to the process registered
%% as `headcount_logger'; this is that process. Each line becomes one
%% `logger:log/4' event at its level (`error', `warning', `info', `debug'),
%% with metadata `domain => [headcount]', `target' (the library module that
%% logged, e.g. `<<"headcount::cluster::registry">>') and `node_name' (the
%% headcount node's name), so logger's configuration (levels, handlers,
%% formatters, Elixir's Logger) decides what is shown and where.
%%
%% {@link headcount:start/1} starts it when it is not running; without it
%% the lines are dropped. The `HEADCOUNT_LOG' environment variable, when
%% set, filters the lines before they are sent.
-module(headcount_logger).

-export([ensure_started/0, init/1]).

%% @doc Starts the logger process unless one is registered; returns its pid.
%% It is not linked to the caller: it serves every node of the VM.
-spec ensure_started() -> pid() | undefined.
ensure_started() ->
    case whereis(?MODULE) of
        undefined ->
            Parent = self(),
            Ref = make_ref(),
            spawn(?MODULE, init, [{Parent, Ref}]),
            receive {Ref, Pid} -> Pid end;
        Pid ->
            Pid
    end.

%% @private
init({Parent, Ref}) ->
    %% Two callers may race to start it: the loser reports the winner.
    Pid = try register(?MODULE, self()) of
              true -> self()
          catch
              error:badarg -> whereis(?MODULE)
          end,
    Parent ! {Ref, Pid},
    case Pid =:= self() of
        true -> loop();
        false -> ok
    end.

loop() ->
    receive
        {headcount_log, Level, Target, Node, Message} ->
            logger:log(Level, "~ts", [Message],
                       #{domain => [headcount], target => Target, node_name => Node}),
            loop();
        _ ->
            loop()
    end.
