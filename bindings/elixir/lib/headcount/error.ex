defmodule Headcount.Error do
  @moduledoc """
  Raised by the `Headcount` functions that return a value (`count/2`,
  `count_info/2`, `untrack_all/2`, `top/3`, `stats/1`, `local_addr/1`) when they
  cannot: the node is stopped or not running, or the input is invalid (a
  topic that is empty or longer than `max_topic_len`). Also the reason a
  `Headcount` server fails to start with a bad option.

  `reason` is an atom to match on:

    * `:not_running`: no `Headcount` server runs under that name;
    * `:closed`: the node was stopped;
    * `:invalid_topic`: the topic is empty or longer than `max_topic_len`;
    * `:config`: a bad option (unknown key, bad value, a key given twice,
      or a configuration that cannot start a node);
    * `:io`, `:invalid_argument`, `:panic`, `:enomem`: the library's own
      failures, with its message.
  """
  defexception [:reason, :message]

  @type t :: %__MODULE__{reason: atom(), message: String.t()}

  @doc false
  # An error term of the Erlang binding as an exception.
  def from({kind, message}) when is_atom(kind) and is_binary(message),
    do: %__MODULE__{reason: kind, message: message}

  def from(reason) when is_atom(reason),
    do: %__MODULE__{reason: reason, message: describe(reason)}

  defp describe(:not_running), do: "no Headcount server runs under that name"
  defp describe(:closed), do: "the headcount node was stopped"
  defp describe(:invalid_topic), do: "the topic is empty or longer than max_topic_len"
  defp describe(:enomem), do: "out of memory"
  defp describe(other), do: "headcount: #{inspect(other)}"
end
