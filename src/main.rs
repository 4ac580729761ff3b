fn main() -> std::process::ExitCode {
    scopegate::cli::main()
}
