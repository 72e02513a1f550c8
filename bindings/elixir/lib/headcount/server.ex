defmodule Headcount.Server do
  @moduledoc false
  # The process behind a `Headcount` child: it starts the node, publishes
  # its handle under the server's name (in :persistent_term, so calls never
  # go through this process), stops the node when it terminates, and runs
  # `discovery: :erlang`.
  #
  # A server that crashed without terminating (killed) leaves its node
  # running and published; its successor under the same name adopts it, so
  # the processes tracked through it stay counted across the restart.
  #
  # Discovery: on start, and on every nodeup, a server sends a hello with
  # the address its peers should dial to the server of the same name on the
  # other node(s); a server that gets a hello adds the address as a peer and,
  # unless the hello was itself a reply, answers with its own. Only
  # addresses travel over Erlang distribution; counts flow over headcount's
  # own links.
  use GenServer
  require Logger

  @hello :"$headcount_hello"

  @spec handle(atom()) :: {:ok, :headcount.node_handle()} | :error
  def handle(name) when is_atom(name) do
    case :persistent_term.get({Headcount, name}, nil) do
      nil -> :error
      h -> {:ok, h}
    end
  end

  def handle(name), do: raise(ArgumentError, "a Headcount server name is an atom, got: #{inspect(name)}")

  def start_link(opts) do
    with {:ok, name, discovery, config} <- split(opts) do
      GenServer.start_link(__MODULE__, {name, discovery, config}, name: name)
    end
  end

  # {:ok, name, discovery, config} or {:error, %Headcount.Error{}}; a
  # non-keyword argument is a programming error (ArgumentError).
  defp split(opts) do
    unless Keyword.keyword?(opts) do
      raise ArgumentError, "Headcount options are a keyword list, got: #{inspect(opts)}"
    end

    {name, opts} = Keyword.pop(opts, :name)
    {discovery, config} = Keyword.pop(opts, :discovery)

    cond do
      not is_atom(name) or name == nil ->
        config_error("name: is required and must be an atom, got: #{inspect(name)}")

      discovery not in [nil, :erlang] ->
        config_error("discovery: must be :erlang or nil, got: #{inspect(discovery)}")

      discovery == :erlang and not Keyword.has_key?(config, :listen) ->
        config_error("discovery: :erlang needs listen: (the address peers dial)")

      bad = Enum.find(config, fn {k, v} -> not valid_value?(k, v) end) ->
        {k, v} = bad

        config_error(
          "invalid value for #{k}: #{inspect(v)} (expected a string, atom or integer" <>
            if(k == :seeds, do: ", or a list of addresses)", else: ")")
        )

      true ->
        {:ok, name, discovery, config}
    end
  end

  defp valid_value?(_k, v) when is_binary(v) or is_integer(v), do: true
  defp valid_value?(_k, v) when is_atom(v) and v != nil, do: true
  defp valid_value?(:seeds, v) when is_list(v), do: Enum.all?(v, &is_binary/1)
  defp valid_value?(_, _), do: false

  defp config_error(message), do: {:error, %Headcount.Error{reason: :config, message: message}}

  @impl true
  def init({name, discovery, config}) do
    Process.flag(:trap_exit, true)

    case adopt(name) || :headcount.start(config) do
      {:ok, h} ->
        :persistent_term.put({Headcount, name}, h)
        state = %{name: name, handle: h, discovery: discovery, advertise: config[:advertise]}
        if discovery == :erlang, do: start_discovery(state)
        {:ok, state}

      {:error, reason} ->
        {:stop, Headcount.Error.from(reason)}
    end
  end

  # The node a killed predecessor left published, if it still runs.
  defp adopt(name) do
    with {:ok, h} <- handle(name),
         addr when addr == :undefined or is_binary(addr) <- :headcount.local_addr(h) do
      {:ok, h}
    else
      _ -> nil
    end
  end

  @impl true
  def terminate(_reason, %{name: name, handle: h}) do
    :persistent_term.erase({Headcount, name})
    :headcount.stop(h)
  end

  @impl true
  def handle_info({:nodeup, node}, %{discovery: :erlang} = state) do
    hello(state, node, false)
    {:noreply, state}
  end

  def handle_info({@hello, name, from, addr, reply?}, %{name: name, discovery: :erlang} = state) do
    if addr != peer_addr(state) do
      case :headcount.add_peer(state.handle, addr) do
        :ok ->
          :ok

        {:error, reason} ->
          Logger.warning("headcount: cannot add peer #{addr} (from #{from}): #{inspect(reason)}")
      end
    end

    unless reply?, do: hello(state, from, true)
    {:noreply, state}
  end

  def handle_info(_other, state), do: {:noreply, state}

  defp start_discovery(state) do
    :ok = :net_kernel.monitor_nodes(true)
    Enum.each(Node.list(), &hello(state, &1, false))
  end

  defp hello(state, node, reply?) do
    send({state.name, node}, {@hello, state.name, node(), peer_addr(state), reply?})
  end

  # The address peers dial: advertise:, else the bound address, with an
  # unspecified host (0.0.0.0, ::) replaced by this Erlang node's host.
  defp peer_addr(%{advertise: adv}) when is_binary(adv), do: adv
  defp peer_addr(%{advertise: adv}) when is_atom(adv) and adv != nil, do: Atom.to_string(adv)

  defp peer_addr(%{handle: h}) do
    bound = :headcount.local_addr(h)
    {host, port} = split_host_port(bound)

    if host in ["0.0.0.0", "[::]", "::"] do
      [_, node_host] = node() |> Atom.to_string() |> String.split("@", parts: 2)
      node_host = if String.contains?(node_host, ":"), do: "[#{node_host}]", else: node_host
      node_host <> ":" <> port
    else
      bound
    end
  end

  defp split_host_port(addr) do
    [port | rev_host] = addr |> String.split(":") |> Enum.reverse()
    {rev_host |> Enum.reverse() |> Enum.join(":"), port}
  end
end
