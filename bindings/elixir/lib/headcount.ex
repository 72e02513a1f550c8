defmodule Headcount do
  @moduledoc """
  Exact, cluster-wide counts of connected users per topic.

  Put one `Headcount` in your supervision tree per BEAM node:

      children = [
        {Headcount, name: MyApp.Headcount, listen: "0.0.0.0:7400", secret: secret, discovery: :erlang}
      ]

  The options other than `:name` and `:discovery` are the library's
  configuration keys (every key of the table in the repository's top-level
  README, e.g. `node_name`, `listen`, `secret`, `seeds`); values are
  strings, atoms or integers, and `seeds` may be a list of addresses. An unknown
  key, a bad value or a key given twice fails the start with a
  `Headcount.Error` (reason `:config`) that names it.

    * `:name` (required): an atom; every other function takes it.
    * `discovery: :erlang`: find the other nodes through Erlang
      distribution. When BEAM nodes connect (`Node.connect/1`, libcluster,
      ...), their `Headcount` servers of the same name exchange the
      addresses they listen on and add each other as peers, so no `seeds`
      are needed. Counting data still flows over headcount's own links.
      Needs `listen`; the address sent is `advertise` if given, else the
      bound address, with an unspecified host (`0.0.0.0`) replaced by the
      host of the Erlang node's name.

  A process calls `track/3` and is counted in the topic until it calls
  `untrack/3` or exits: the NIF monitors it, and its exit untracks it from
  every topic at once. Calls do not go through the server process: they are
  short NIF calls on the caller's scheduler. If the server process crashes,
  its restart adopts the running node, so tracked processes stay counted;
  when it is shut down, the node leaves the cluster and stops.

  Conventions: functions that return a value raise `Headcount.Error` when
  the node is not running or stopped, or the topic is invalid; functions
  that return `:ok` return `{:error, reason}` for those outcomes instead.
  Arguments of the wrong type raise `ArgumentError`.

  Live counts: `subscribe/3` sends the caller
  `{:headcount_changes, ref, [{topic, count, users}]}` whenever matching
  topics' cluster-wide counts change, and `top/3` ranks topics by count.

  Not in this version (they wait for the library's distinct users):
  `users/2` and the `user:` option of `track/3`.
  """

  alias Headcount.{Error, Server}

  @typedoc "The name given in the child spec."
  @type server :: atom()
  @typedoc "Any bytes (a binary, or iodata), 1 to `max_topic_len` bytes."
  @type topic :: iodata()
  @type reason :: :not_running | :closed | :invalid_topic | :already_tracked | :not_tracked | :noproc | atom()

  @doc false
  def child_spec(opts) do
    %{id: Keyword.get(opts, :name, __MODULE__), start: {__MODULE__, :start_link, [opts]}}
  end

  @doc """
  Starts a node under `opts[:name]` (see the module doc), linked to the
  caller. Returns `{:error, %Headcount.Error{}}` for bad options.
  """
  @spec start_link(keyword()) :: GenServer.on_start()
  defdelegate start_link(opts), to: Server

  @doc "Stops the server and its node (the node leaves the cluster gracefully)."
  @spec stop(server()) :: :ok
  def stop(server), do: GenServer.stop(server)

  @doc """
  Counts a process in `topic`: the caller, or `pid: pid` (a local process).

  Returns `{:error, :already_tracked}` if it is already counted there,
  `{:error, :noproc}` for a process that is not alive, `{:error,
  :invalid_topic}`, `{:error, :closed}` or `{:error, :not_running}`.
  """
  @spec track(server(), topic(), keyword()) :: :ok | {:error, reason()}
  def track(server, topic, opts \\ []) do
    pid = pid_opt(opts, :track)

    with {:ok, h} <- node_handle(server), do: :headcount.track(h, topic, pid)
  end

  @doc """
  Stops counting a process (the caller, or `pid: pid`) in `topic`.
  Returns `{:error, :not_tracked}` if it was not counted there.
  """
  @spec untrack(server(), topic(), keyword()) :: :ok | {:error, reason()}
  def untrack(server, topic, opts \\ []) do
    pid = pid_opt(opts, :untrack)

    with {:ok, h} <- node_handle(server), do: :headcount.untrack(h, topic, pid)
  end

  @doc """
  Stops counting `pid` in every topic; returns how many topics it left
  (0 for a process that is not tracked).
  """
  @spec untrack_all(server(), pid()) :: non_neg_integer()
  def untrack_all(server, pid) when is_pid(pid), do: value(server, &:headcount.untrack_all(&1, pid))

  @doc "The cluster-wide count: this node's exact count plus every live peer's last report."
  @spec count(server(), topic()) :: non_neg_integer()
  def count(server, topic), do: value(server, &:headcount.count(&1, topic))

  @doc "This node's own exact count."
  @spec count_local(server(), topic()) :: non_neg_integer()
  def count_local(server, topic), do: value(server, &:headcount.count_local(&1, topic))

  @doc """
  The count with how fresh and complete it is: `%{count:, local:,
  peers_reporting:, peers_known:, oldest_report_age_ms:}`.
  """
  @spec count_info(server(), topic()) :: %{atom() => non_neg_integer()}
  def count_info(server, topic), do: value(server, &:headcount.count_info(&1, topic))

  @doc "The sum of all counts across the cluster."
  @spec total(server()) :: non_neg_integer()
  def total(server), do: value(server, &:headcount.total/1)

  @doc """
  The node's statistics (string keys, as the library's JSON), including
  `"beam"`: what the node costs the BEAM (`"processes"` monitored,
  `"monitor_bytes"`, `"pid_table_bytes"`, `"bytes_per_process"`,
  `"node_bytes"`).
  """
  @spec stats(server()) :: map()
  def stats(server), do: value(server, &:headcount.stats/1)

  @doc "The address the node listens on (`\"host:port\"`), or `nil` without `listen`."
  @spec local_addr(server()) :: String.t() | nil
  def local_addr(server) do
    case value(server, &:headcount.local_addr/1) do
      :undefined -> nil
      addr -> addr
    end
  end

  @doc "Connects to the node listening at `addr` (`\"host:port\"`) and keeps reconnecting."
  @spec add_peer(server(), String.t()) :: :ok | {:error, term()}
  def add_peer(server, addr) do
    with {:ok, h} <- node_handle(server), do: :headcount.add_peer(h, addr)
  end

  @doc """
  Subscribes the caller to every topic that starts with `prefix` (`""`:
  every topic). It then receives

      {:headcount_changes, ref, [{topic, count, users}]}

  (`topic` a binary) whenever matching topics' cluster-wide counts change:
  local tracks and untracks (no later than the flush that ships them),
  peer reports, a peer going down or leaving. A message names a topic
  once, with its latest count; after changes stop, the last count received
  for every matching topic is its `count/2` (0 for a topic that emptied).
  `users` equals `count` until the library counts distinct users.

  Options: `initial: true` makes the first message hold every matching
  topic whose count is non-zero. The subscription ends with
  `unsubscribe/2`, when the caller exits, or when the node stops. Returns
  `{:error, :invalid_topic}` for a prefix over `max_topic_len`, `{:error,
  :closed}` or `{:error, :not_running}`.

  Messages are sent by a thread of the NIF's own, never on a scheduler; a
  process that stops receiving accumulates one message per flush.
  """
  @spec subscribe(server(), iodata(), keyword()) :: {:ok, reference()} | {:error, reason()}
  def subscribe(server, prefix, opts \\ []) do
    initial =
      case opts do
        [] -> false
        [initial: b] when is_boolean(b) -> b
        _ -> raise ArgumentError, "subscribe: the only option is initial: (a boolean), got: #{inspect(opts)}"
      end

    with {:ok, h} <- node_handle(server), do: :headcount.watch(h, prefix, %{initial: initial})
  end

  @doc """
  Ends the subscription `ref` of `subscribe/2,3`: no message for it
  arrives after this returns (the caller's mailbox is flushed of those
  already sent). Idempotent. Returns `{:error, :closed}` once the node is
  stopped (which ended it) and `{:error, :not_running}`.
  """
  @spec unsubscribe(server(), reference()) :: :ok | {:error, reason()}
  def unsubscribe(server, ref) when is_reference(ref) do
    with {:ok, h} <- node_handle(server), do: :headcount.unwatch(h, ref)
  end

  @doc """
  The `k` topics with the highest cluster-wide counts, highest first, ties
  broken by topic bytes ascending, as `[{topic, count}]`; topics at zero
  are not listed. Options: `prefix:` (default `""`) keeps only topics that
  start with it. Exact, by a scan of every topic (on a dirty scheduler).
  """
  @spec top(server(), non_neg_integer(), keyword()) :: [{binary(), non_neg_integer()}]
  def top(server, k, opts \\ []) when is_integer(k) and k >= 0 do
    prefix =
      case opts do
        [] -> ""
        [prefix: p] -> p
        _ -> raise ArgumentError, "top: the only option is prefix: (iodata), got: #{inspect(opts)}"
      end

    value(server, &:headcount.top(&1, k, prefix))
  end

  # -- helpers ---------------------------------------------------------------

  defp pid_opt(opts, fun) do
    case opts do
      [] ->
        self()

      [pid: pid] when is_pid(pid) ->
        pid

      _ ->
        if Keyword.has_key?(opts, :user) do
          raise ArgumentError,
                "#{fun}: the user: option needs distinct users, which this version does not have yet"
        end

        raise ArgumentError, "#{fun}: the only option is pid: (a pid), got: #{inspect(opts)}"
    end
  end

  defp node_handle(server) do
    case Server.handle(server) do
      {:ok, h} -> {:ok, h}
      :error -> {:error, :not_running}
    end
  end

  # Runs `fun` on the server's node; raises Headcount.Error on {:error, _}.
  defp value(server, fun) do
    case node_handle(server) do
      {:ok, h} ->
        case fun.(h) do
          {:error, reason} -> raise Error.from(reason)
          v -> v
        end

      {:error, reason} ->
        raise Error.from(reason)
    end
  end
end
