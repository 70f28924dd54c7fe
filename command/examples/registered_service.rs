//! A service that routes itself: it registers `/NAME` of `localhost` on the proxy's HTTP
//! listener 127.0.0.1:8000 and answers every request with its name, as socketmaster's a.go
//! and b.go. Run two of them on one port:
//!
//! ```text
//! cargo run -p sozu-command-lib --example registered_service -- /run/sozu/register.sock a &
//! cargo run -p sozu-command-lib --example registered_service -- /run/sozu/register.sock b &
//! curl -H 'Host: localhost' http://127.0.0.1:8000/a   # a
//! curl -H 'Host: localhost' http://127.0.0.1:8000/b   # b
//! ```

use std::io::{BufRead, BufReader, Write};

use sozu_command_lib::registration::{Definition, listen};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (socket, name) = (args.next().ok_or("socket?")?, args.next().ok_or("name?")?);
    let definition = Definition::http(&name, "127.0.0.1:8000".parse()?, "localhost")
        .path_prefix(&format!("/{name}"));
    let listener = listen(socket, definition)?;
    println!("{name} registered as {}", listener.registration_id());
    for stream in listener.incoming() {
        let mut stream = stream?;
        let mut head = BufReader::new(stream.try_clone()?).lines();
        while head
            .next()
            .and_then(Result::ok)
            .is_some_and(|line| !line.is_empty())
        {}
        let body = format!("{name}\n");
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
    }
    Ok(())
}
