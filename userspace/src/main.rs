//! The `xlb` command line.

use std::{net::IpAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "xlb", version, about = "XDP + user-space load balancer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the data path and serve the config until SIGINT/SIGTERM.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a config: exit 0 when valid, else 1 with FILE:LINE:COL: message.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the data path counters of a running xlb (read from its pinned maps).
    Stats {
        #[arg(long)]
        config: PathBuf,
    },
    /// Send one command to a running xlb's runtime API and print the
    /// answer (exit 1 when it is an `error:`); `xlb ctl help` lists them.
    Ctl {
        /// The API socket (`[global] api_socket` of the running config).
        #[arg(long, default_value = xlb::config::DEFAULT_API_SOCKET)]
        socket: PathBuf,
        /// The command's words, e.g. `show stat` or
        /// `set server web/web2 state maint`.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// On a DSR backend: strip the IPIP / IP6IP6 header of packets for the
    /// local VIPs and pass the inner packet to the stack, until SIGINT/SIGTERM.
    Decap {
        /// The interface the tunnelled packets arrive on.
        #[arg(long)]
        interface: String,
        /// A VIP configured on this host (repeat for more). Without any,
        /// every tunnel is stripped and the stack drops what is not local.
        #[arg(long = "vip", value_name = "ADDR")]
        vips: Vec<IpAddr>,
        /// How to attach.
        #[arg(long, value_enum, default_value_t = xlb::decap::Mode::Auto)]
        mode: xlb::decap::Mode,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Run { config } => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(xlb::daemon::run(&config))),
        Command::Check { config } => {
            match xlb::config::load_with(&config, &xlb::l7::config_checks()) {
                Ok(_) => {
                    println!("{}: ok", config.display());
                    Ok(())
                }
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(1);
                }
            }
        }
        Command::Stats { config } => xlb::cli_stats::print(&config),
        Command::Ctl { socket, command } => match xlb::api::client::run(&socket, &command) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
        Command::Decap {
            interface,
            vips,
            mode,
        } => xlb::decap::run(&xlb::decap::Options {
            interface,
            vips,
            mode,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xlb: {e:#}");
            ExitCode::from(1)
        }
    }
}
