//! The read-eval loops: an interactive prompt on a terminal (rustyline), or plain lines
//! from a pipe (no prompt, no banner), as zkCli reads when JLine is unavailable.

use std::io::{BufRead, IsTerminal};

use rustyline::error::ReadlineError;
use tokio::sync::mpsc;

use super::commands::{Flow, Shell};

enum Input {
    Line(String),
    Interrupted,
    Eof,
    Failed(String),
}

/// Reads lines on a thread of its own, so the runtime (session pings, watch events) keeps
/// running while the user types. Each prompt sent is answered by one input.
fn spawn_reader(terminal: bool, shell: &Shell) -> (std::sync::mpsc::Sender<String>, mpsc::UnboundedReceiver<Input>) {
    let (prompt_tx, prompt_rx) = std::sync::mpsc::channel::<String>();
    let (input_tx, input_rx) = mpsc::unbounded_channel();
    if terminal {
        let config = rustyline::Config::builder().auto_add_history(true).max_history_size(1000).unwrap().build();
        match rustyline::DefaultEditor::with_config(config) {
            Ok(mut editor) => {
                if let Ok(printer) = editor.create_external_printer() {
                    shell.printer.set_external(Box::new(printer));
                }
                std::thread::spawn(move || {
                    for prompt in prompt_rx {
                        let input = match editor.readline(&prompt) {
                            Ok(line) => Input::Line(line),
                            Err(ReadlineError::Interrupted) => Input::Interrupted,
                            Err(ReadlineError::Eof) => Input::Eof,
                            Err(e) => Input::Failed(e.to_string()),
                        };
                        if input_tx.send(input).is_err() {
                            break;
                        }
                    }
                });
                return (prompt_tx, input_rx);
            }
            Err(e) => eprintln!("line editing unavailable: {e}"),
        }
    }
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut lines = stdin.lock().lines();
        for _prompt in prompt_rx {
            let input = match lines.next() {
                Some(Ok(line)) => Input::Line(line),
                Some(Err(e)) => Input::Failed(e.to_string()),
                None => Input::Eof,
            };
            if input_tx.send(input).is_err() {
                break;
            }
        }
    });
    (prompt_tx, input_rx)
}

/// Runs the shell until `quit` or end of input; returns the exit code (the last command's,
/// as zkCli does; 0 after `quit`).
pub async fn run(mut shell: Shell) -> i32 {
    let terminal = std::io::stdin().is_terminal();
    shell.announce = terminal;
    let (prompts, mut inputs) = spawn_reader(terminal, &shell);
    if terminal {
        println!("Connecting to {}", shell.host);
        println!("Welcome to Warden! Type 'help' for the commands.");
    }
    if let Err(e) = shell.connect().await {
        eprintln!("{e}");
        shell.exit_code = 1;
    }
    loop {
        let prompt = if terminal { shell.prompt() } else { String::new() };
        if prompts.send(prompt).is_err() {
            break;
        }
        match inputs.recv().await {
            Some(Input::Line(line)) => {
                if shell.execute_line(&line).await == Flow::Quit {
                    break;
                }
            }
            Some(Input::Interrupted) => continue,
            Some(Input::Failed(e)) => {
                eprintln!("{e}");
                break;
            }
            Some(Input::Eof) | None => break,
        }
    }
    shell.close().await;
    shell.exit_code
}
