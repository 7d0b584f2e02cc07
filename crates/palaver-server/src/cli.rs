//! The command line: `serve` (default), `migrate`, `admin`, `openapi`,
//! `bench`.

use std::process::ExitCode;

use anyhow::Context as _;
use palaver_core::user::NewUser;
use tokio::net::TcpListener;

use crate::app::{App, open_store, serve, shutdown_signal};
use crate::config::{AdminCommand, Cli, Command};

/// Entry point of the binary.
pub fn main() -> ExitCode {
    // TLS for every HTTP client this process builds (push services, benches).
    palaver_push::providers::install_crypto_provider();
    let cli = match Cli::load() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("palaver: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = cli.config.validate() {
        eprintln!("palaver: {e}");
        return ExitCode::from(2);
    }
    if let Err(e) = crate::observability::init_logging(&cli.config.log, cli.config.log_format) {
        eprintln!("palaver: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("palaver: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "fatal");
            eprintln!("palaver: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = App::build(&config).await?;
            let listener = TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {} (PALAVER_LISTEN)", config.listen))?;
            serve(listener, app, shutdown_signal()).await?;
        }
        Command::Migrate => {
            let store = open_store(&config).await?;
            store.close().await;
            println!("database schema is up to date ({})", store.backend().as_str());
        }
        Command::Admin(AdminCommand::CreateUser { email, password, role, display_name }) => {
            let app = App::build(&config).await?;
            let display_name = display_name.unwrap_or_else(|| email.split('@').next().unwrap_or("user").to_owned());
            let user = app
                .state
                .services
                .users
                .create_account(NewUser {
                    email,
                    password,
                    display_name,
                    native_languages: vec![],
                    learning_languages: vec![],
                    role,
                })
                .await
                .map_err(|e| anyhow::anyhow!("{e}{}", validation_detail(&e)))?;
            app.state.services.store.close().await;
            println!("created user {} <{}> with role {}", user.id, user.email, user.role);
        }
        Command::Admin(AdminCommand::SetRole { user_id, role }) => {
            let app = App::build(&config).await?;
            let user = app.state.services.users.set_role(user_id, role).await?;
            app.state.services.store.close().await;
            println!("user {} <{}> now has role {}", user.id, user.email, user.role);
        }
        Command::Admin(AdminCommand::RotateKeys { batch, status }) => {
            let app = App::build(&config).await?;
            if !status {
                crate::rotate::rotate_all(&app.state, batch.clamp(1, 10_000)).await?;
            }
            crate::rotate::print_status(&app.state).await?;
            app.state.services.store.close().await;
        }
        Command::Admin(AdminCommand::GenerateKey { id }) => {
            let id = palaver_crypto::KeyId::new(&id).map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", palaver_crypto::generate_key_spec(&id));
        }
        Command::Openapi => {
            println!("{}", crate::app::openapi().to_pretty_json()?);
        }
        Command::Bench(command) => crate::bench::run(command, &config).await?,
    }
    Ok(())
}

fn validation_detail(err: &palaver_core::Error) -> String {
    match err {
        palaver_core::Error::Validation(fields) => fields.fields().iter().map(|(k, v)| format!("; {k} {v}")).collect(),
        _ => String::new(),
    }
}
