defmodule Headcount.PathDependencyTest do
  # A new `mix new` project, in a temporary directory outside the repo, that
  # depends on this package by path: `mix compile` builds the library and
  # the NIF, the app works, and the Erlang EUnit module is not shipped.
  use ExUnit.Case, async: true

  @moduletag timeout: 600_000
  @package Path.expand("..", __DIR__)

  test "a new mix project uses Headcount as a path dependency" do
    dir = Path.join(System.tmp_dir!(), "headcount_path_dep_#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    env = [{"MIX_ENV", "dev"}]

    {_, 0} = System.cmd("mix", ["new", "demo"], cd: dir, env: env, stderr_to_stdout: true)
    app = Path.join(dir, "demo")
    mix_exs = Path.join(app, "mix.exs")

    File.write!(
      mix_exs,
      String.replace(
        File.read!(mix_exs),
        ~r/defp deps do\n\s*\[/,
        "defp deps do\n    [{:headcount, path: #{inspect(@package)}},"
      )
    )

    code = """
    {:ok, _} = Supervisor.start_link([{Headcount, name: Demo.HC}], strategy: :one_for_one)
    :ok = Headcount.track(Demo.HC, "room:1")
    IO.puts("count=\#{Headcount.count(Demo.HC, "room:1")}")
    """

    {out, status} = System.cmd("mix", ["run", "-e", code], cd: app, env: env, stderr_to_stdout: true)
    assert status == 0, out
    assert out =~ "count=1"

    ebin = Path.join(app, "_build/dev/lib/headcount/ebin")
    assert File.exists?(Path.join(ebin, "headcount.beam"))
    assert File.exists?(Path.join(ebin, "Elixir.Headcount.beam"))
    refute File.exists?(Path.join(ebin, "headcount_tests.beam"))
    assert File.exists?(Path.join(app, "_build/dev/lib/headcount/priv/headcount_nif.so"))
    # built against the release library
    assert File.read!(Path.join(@package, "../erlang/priv/.hc_lib")) =~ "/target/release/"
  end
end
