use iothub_emulator::cli::{self, Parsed};

fn main() {
    let args = match cli::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(args)) => *args,
        Ok(Parsed::Print(text)) => {
            print!("{text}");
            return;
        }
        Err(e) => {
            eprintln!("iothub-emulator: {e}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("iothub-emulator: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(iothub_emulator::run(args, |ready| ready.print())) {
        eprintln!("iothub-emulator: {e}");
        std::process::exit(1);
    }
    // Job runners may still be sleeping; they must not delay the exit.
    runtime.shutdown_background();
}
