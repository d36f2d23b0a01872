//! `cache-page`: the operator CLI of cache-page. See `cache-page --help` and the
//! crate's README.

mod cli;
mod commands;
mod error;
mod input;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::{cli::Cli, error::CliError, output::Out};

fn main() -> ExitCode {
    // Bad usage and --help/--version exit here, with clap's status (2, or 0).
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let mut out = Out::new(cli.json);
    let result = runtime.block_on(commands::run(cli, &mut out));
    let result = result.and_then(|()| out.flush());
    // Drop the connection's background tasks before exiting.
    drop(runtime);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Closed) => {
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        Err(CliError::Usage(err)) => {
            let _ = out.flush();
            let _ = err.print();
            ExitCode::from(2)
        }
        Err(err) => {
            // What was printed before the error (say, the first groups of a list) is
            // kept: it did happen.
            let _ = out.flush();
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}
