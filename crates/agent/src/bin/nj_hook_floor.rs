//! nj-hook-floor: attaches an empty program to the raw tracepoint the agent's syscall
//! dispatcher uses (sys_exit) and holds it until SIGINT or SIGTERM. bench/run.sh runs it as
//! the `hook-floor` monitor: what the hook alone costs every syscall on this kernel (the slow
//! syscall path it switches on, the tracepoint, the program call), side by side with the agent.
//!
//! Usage: nj-hook-floor (prints "attached" once the program is attached)

use anyhow::{bail, Result};
use nightjar_loader::bench::attach_hook_floor;
use tokio::signal::unix::{signal, SignalKind};

fn main() -> Result<()> {
    if let Some(arg) = std::env::args().nth(1) {
        bail!("unknown argument {arg:?} (nj-hook-floor takes none)");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let floor = attach_hook_floor()?;
    println!("attached");
    runtime.block_on(async {
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        anyhow::Ok(())
    })?;
    drop(floor);
    Ok(())
}
