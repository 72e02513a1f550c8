defmodule Mix.Tasks.Compile.HeadcountNif do
  @shortdoc "Builds libheadcount (release) and the headcount NIF"
  @moduledoc """
  Runs `make -C ../erlang nif`, which builds the Rust library with
  `cargo build --release -p headcount-ffi` (a no-op when it is up to date)
  and links `priv/headcount_nif.so` there, then copies the NIF into this
  application's `priv/` in `_build`. The Erlang binding's sources and NIF
  are the Elixir package's own: nothing is duplicated.

  `PROFILE=debug` in the environment builds and links the debug library
  instead; `HC_LIB=/path/to/libheadcount.a` links that file and skips cargo.
  """
  use Mix.Task.Compiler

  @erlang_dir Path.expand("../erlang", __DIR__)

  @impl true
  def run(_args) do
    case System.cmd("make", ["-s", "-C", @erlang_dir, "nif"], stderr_to_stdout: true) do
      {_, 0} ->
        install(Path.join(@erlang_dir, "priv/headcount_nif.so"))

      {out, status} ->
        Mix.shell().error(out)

        {:error,
         [
           %Mix.Task.Compiler.Diagnostic{
             compiler_name: "headcount_nif",
             file: Path.join(@erlang_dir, "Makefile"),
             message: "make -C #{@erlang_dir} nif failed (exit #{status}); see the output above",
             position: nil,
             severity: :error
           }
         ]}
    end
  end

  # Copies the NIF into _build only when it changed, through a rename, so a
  # VM that has the old one loaded keeps its mapping intact.
  defp install(nif) do
    dest = Path.join([Mix.Project.app_path(), "priv", "headcount_nif.so"])

    if File.exists?(dest) and File.read!(dest) == File.read!(nif) do
      {:noop, []}
    else
      File.mkdir_p!(Path.dirname(dest))
      tmp = dest <> ".tmp"
      File.cp!(nif, tmp)
      File.rename!(tmp, dest)
      {:ok, []}
    end
  end
end

defmodule Headcount.MixProject do
  use Mix.Project

  def project do
    [
      app: :headcount,
      version: "0.1.0",
      elixir: "~> 1.14",
      # The Erlang binding's modules (headcount, headcount_json) are built
      # from their one source; its EUnit module stays out.
      erlc_paths: ["../erlang/src"],
      compilers: [:headcount_nif | Mix.compilers()],
      start_permanent: Mix.env() == :prod,
      deps: [],
      description: "Exact cluster-wide counts of connected users per topic (NIF over libheadcount)",
      package: [licenses: ["MIT", "Apache-2.0"]]
    ]
  end

  def application do
    [extra_applications: [:logger]]
  end
end
