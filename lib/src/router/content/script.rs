//! A TCP listener's routing script: Lua 5.4 (through `mlua`, built from source), called with
//! the first bytes of a connection until it decides.
//!
//! # Contract
//!
//! The script defines `function route(data, peer)`. `data` is every byte buffered so far (a
//! Lua string), `peer` the client's address as `"ip:port"`. It returns:
//!
//! - `nil`: wait for more bytes;
//! - `{ cluster = "id" }` or `{ remote = "host:port" }`, either with `data = "..."` (send
//!   these bytes to the backend instead of those buffered) and/or `reply = "..."` (send these
//!   to the client first);
//! - `{ close = true }`, or `{ close = "bytes" }` (send them, then close);
//! - `{ file = "/path", reply = "...", offset = N, nbytes = N }`: answer with the file (from
//!   `offset`, at most `nbytes`), then close.
//!
//! It may define `function proxy_error(peer, message)`, called when the chosen backend cannot
//! be reached; what it returns is ignored.
//!
//! # Limits
//!
//! The script runs inside the event loop, so each call (and the script's loading) gets an
//! instruction budget ([`INSTRUCTION_BUDGET`]) and the script's state a memory limit
//! ([`MEMORY_LIMIT`]). Only the `string`, `table`, `math`, `utf8` and `coroutine` libraries and
//! the safe base functions are there: no `io`, `os`, `package`, `debug`, `require`, `load`,
//! `dofile` nor `loadfile`; `print` writes to the proxy's log at debug level. A call that fails
//! (a Lua error, the budget or the memory spent, a result that breaks the contract) is a
//! [`ScriptError`]: the caller closes that one connection and counts it.

use std::{cell::Cell, net::SocketAddr, path::PathBuf, rc::Rc};

use mlua::{Function, HookTriggers, Lua, LuaOptions, StdLib, Table, Value, VmState};
use sozu_command_lib::request::TcpScript;

/// Lua instructions one call of `route` (or the loading of the script) may run.
pub const INSTRUCTION_BUDGET: u32 = 1_000_000;
/// The memory a script's Lua state may hold, in bytes.
pub const MEMORY_LIMIT: usize = 16 * 1024 * 1024;
/// How often the budget is checked, in instructions.
const BUDGET_STEP: u32 = 1_000;

/// Why a script could not be loaded or a call failed. Lua's messages name the script and the
/// line.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The script does not compile, or fails when run at load time.
    #[error("script {name} does not load")]
    Load {
        /// The script's name, as the listener's configuration gives it.
        name: String,
        /// Lua's error.
        source: mlua::Error,
    },
    /// The script loads but defines no `route(data, peer)` function; holds the script's name.
    #[error("script {0} defines no function `route(data, peer)`")]
    NoRoute(String),
    /// A call of the script raised an error, or spent its instruction or memory budget.
    #[error("script {name} failed")]
    Call {
        /// The script's name.
        name: String,
        /// Lua's error.
        source: mlua::Error,
    },
    /// A call of the script returned something that breaks the contract.
    #[error("script {name} returned {what}")]
    Result {
        /// The script's name.
        name: String,
        /// What was returned, described.
        what: String,
    },
}

/// What a script (or a [`super::TcpRouter`]) decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Wait for more bytes (a script's `nil`).
    Wait,
    /// Connect to `target`; send `data` instead of the buffered bytes, and `reply` to the
    /// client first, when given.
    Connect {
        /// Where to connect.
        target: Target,
        /// Bytes to send to the backend instead of the buffered ones; `None` forwards the buffered
        /// bytes.
        data: Option<Vec<u8>>,
        /// Bytes to send to the client before relaying; `None` sends nothing.
        reply: Option<Vec<u8>>,
    },
    /// Send these bytes to the client (possibly none), then close.
    Close(Vec<u8>),
    /// Send `reply`, then the file's bytes from `offset` (at most `nbytes`), then close.
    File {
        /// The file to send.
        path: PathBuf,
        /// Bytes to send before the file; `None` sends nothing.
        reply: Option<Vec<u8>>,
        /// Where in the file to start, in bytes.
        offset: u64,
        /// At most this many bytes of the file; `None` sends up to its end.
        nbytes: Option<u64>,
    },
}

/// Where a connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A cluster of the worker, by id: a backend is chosen as for any frontend.
    Cluster(String),
    /// `host:port`; a host name is resolved off the event loop (see `resolver`).
    Remote(String),
}

/// A loaded script, ready to be called.
pub struct Script {
    name: String,
    lua: Lua,
    route: Function,
    proxy_error: Option<Function>,
    /// Budget steps left in the current call.
    steps_left: Rc<Cell<u32>>,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script").field("name", &self.name).finish()
    }
}

impl Script {
    /// Loads `script` in a fresh sandboxed state and runs its top level (within the budget).
    pub fn load(script: &TcpScript) -> Result<Script, ScriptError> {
        let name = script.name.clone();
        let load_error = |source| ScriptError::Load {
            name: name.clone(),
            source,
        };
        let lua = sandbox().map_err(load_error)?;
        let steps_left = Rc::new(Cell::new(0u32));
        let steps = Rc::clone(&steps_left);
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(BUDGET_STEP),
            move |_, _| match steps.get().checked_sub(1) {
                Some(left) => {
                    steps.set(left);
                    Ok(VmState::Continue)
                }
                None => Err(mlua::Error::runtime("instruction budget exhausted")),
            },
        )
        .map_err(load_error)?;
        steps_left.set(INSTRUCTION_BUDGET / BUDGET_STEP);
        lua.load(script.source.as_str())
            .set_name(format!("@{}", script.name))
            .set_mode(mlua::ChunkMode::Text)
            .exec()
            .map_err(load_error)?;
        let globals = lua.globals();
        let route = match globals.get::<Value>("route").map_err(load_error)? {
            Value::Function(route) => route,
            _ => return Err(ScriptError::NoRoute(name)),
        };
        let proxy_error = match globals.get::<Value>("proxy_error").map_err(load_error)? {
            Value::Function(function) => Some(function),
            _ => None,
        };
        Ok(Script {
            name,
            lua,
            route,
            proxy_error,
            steps_left,
        })
    }

    /// Calls `route(data, peer)`.
    pub fn route(&self, data: &[u8], peer: SocketAddr) -> Result<Decision, ScriptError> {
        let call_error = |source| ScriptError::Call {
            name: self.name.clone(),
            source,
        };
        self.steps_left.set(INSTRUCTION_BUDGET / BUDGET_STEP);
        let data = self.lua.create_string(data).map_err(call_error)?;
        let value: Value = self
            .route
            .call((data, peer.to_string()))
            .map_err(call_error)?;
        match value {
            Value::Nil => Ok(Decision::Wait),
            Value::Table(table) => self.decision(&table),
            other => Err(self.bad_result(format!("a {}, not nil or a table", other.type_name()))),
        }
    }

    /// Calls `proxy_error(peer, message)` when the script defines it.
    pub fn proxy_error(&self, peer: SocketAddr, message: &str) -> Result<(), ScriptError> {
        let Some(function) = &self.proxy_error else {
            return Ok(());
        };
        self.steps_left.set(INSTRUCTION_BUDGET / BUDGET_STEP);
        function
            .call::<Value>((peer.to_string(), message))
            .map(drop)
            .map_err(|source| ScriptError::Call {
                name: self.name.clone(),
                source,
            })
    }

    fn bad_result(&self, what: String) -> ScriptError {
        ScriptError::Result {
            name: self.name.clone(),
            what,
        }
    }

    /// Reads a `route` result table; a key outside the contract, a value of the wrong type or
    /// two destinations break the contract.
    fn decision(&self, table: &Table) -> Result<Decision, ScriptError> {
        let mut fields = Fields::default();
        for pair in table.pairs::<Value, Value>() {
            let (key, value) = pair.map_err(|source| ScriptError::Call {
                name: self.name.clone(),
                source,
            })?;
            let Value::String(key) = key else {
                return Err(self.bad_result(format!("a {} key", key.type_name())));
            };
            let key = key.to_string_lossy();
            fields
                .set(&key, value)
                .map_err(|what| self.bad_result(format!("`{key}` as {what}")))?;
        }
        fields.decision().map_err(|what| self.bad_result(what))
    }
}

/// A Lua state with only the safe libraries, and `print` sent to the log.
fn sandbox() -> mlua::Result<Lua> {
    let libs = StdLib::STRING | StdLib::TABLE | StdLib::MATH | StdLib::UTF8 | StdLib::COROUTINE;
    let lua = Lua::new_with(libs, LuaOptions::new())?;
    lua.set_memory_limit(MEMORY_LIMIT)?;
    let globals = lua.globals();
    for unsafe_function in ["dofile", "loadfile", "load", "require"] {
        globals.set(unsafe_function, Value::Nil)?;
    }
    let print = lua.create_function(|_, values: mlua::Variadic<Value>| {
        let line: Vec<String> = values
            .iter()
            .map(|value| {
                value
                    .to_string()
                    .unwrap_or_else(|_| value.type_name().into())
            })
            .collect();
        log::debug!("script: {}", line.join("\t"));
        Ok(())
    })?;
    globals.set("print", print)?;
    Ok(lua)
}

/// The fields of a `route` result, as they are read.
#[derive(Default)]
struct Fields {
    cluster: Option<String>,
    remote: Option<String>,
    data: Option<Vec<u8>>,
    reply: Option<Vec<u8>>,
    /// `close = true` is an empty farewell.
    close: Option<Vec<u8>>,
    file: Option<String>,
    offset: Option<u64>,
    nbytes: Option<u64>,
}

impl Fields {
    /// Records one field; the error says what the value was expected to be.
    fn set(&mut self, key: &str, value: Value) -> Result<(), String> {
        match key {
            "cluster" => self.cluster = Some(text(value)?),
            "remote" => self.remote = Some(text(value)?),
            "file" => self.file = Some(text(value)?),
            "data" => self.data = Some(bytes(value)?),
            "reply" => self.reply = Some(bytes(value)?),
            "close" => {
                self.close = match value {
                    Value::Boolean(true) => Some(Vec::new()),
                    Value::Boolean(false) => None,
                    other => Some(bytes(other).map_err(|_| "true or a string".to_string())?),
                }
            }
            "offset" => self.offset = Some(count(value)?),
            "nbytes" => self.nbytes = Some(count(value)?),
            _ => {
                return Err(
                    "an unknown key (expected cluster, remote, data, reply, close, file, \
                     offset or nbytes)"
                        .to_string(),
                );
            }
        }
        Ok(())
    }

    fn decision(self) -> Result<Decision, String> {
        let chosen = [
            self.cluster.is_some(),
            self.remote.is_some(),
            self.close.is_some(),
            self.file.is_some(),
        ]
        .iter()
        .filter(|&&set| set)
        .count();
        if chosen != 1 {
            return Err(format!(
                "{chosen} of cluster, remote, close and file: a table names exactly one"
            ));
        }
        if let Some(path) = self.file {
            return Ok(Decision::File {
                path: PathBuf::from(path),
                reply: self.reply,
                offset: self.offset.unwrap_or(0),
                nbytes: self.nbytes,
            });
        }
        if self.offset.is_some() || self.nbytes.is_some() {
            return Err("offset or nbytes without file".to_string());
        }
        if let Some(farewell) = self.close {
            return Ok(Decision::Close(farewell));
        }
        let target = match (self.cluster, self.remote) {
            (Some(cluster), _) => Target::Cluster(cluster),
            (None, Some(remote)) => Target::Remote(remote),
            (None, None) => return Err("no destination".to_string()),
        };
        Ok(Decision::Connect {
            target,
            data: self.data,
            reply: self.reply,
        })
    }
}

fn text(value: Value) -> Result<String, String> {
    match value {
        Value::String(text) => text
            .to_str()
            .map(|text| text.to_string())
            .map_err(|_| "UTF-8 text".to_string()),
        _ => Err(format!("a {}, not a string", value.type_name())),
    }
}

fn bytes(value: Value) -> Result<Vec<u8>, String> {
    match value {
        Value::String(text) => Ok(text.as_bytes().to_vec()),
        _ => Err(format!("a {}, not a string", value.type_name())),
    }
}

fn count(value: Value) -> Result<u64, String> {
    match value {
        Value::Integer(number) => u64::try_from(number).map_err(|_| "a negative number".into()),
        _ => Err(format!("a {}, not an integer", value.type_name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(source: &str) -> Result<Script, ScriptError> {
        Script::load(&TcpScript {
            name: "test.lua".to_string(),
            source: source.to_string(),
        })
    }

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 40000))
    }

    fn route(source: &str, data: &[u8]) -> Result<Decision, ScriptError> {
        script(source).unwrap().route(data, peer())
    }

    fn connect(target: Target) -> Decision {
        Decision::Connect {
            target,
            data: None,
            reply: None,
        }
    }

    #[test]
    fn route_sees_the_bytes_and_the_peer() {
        let source = r#"
            function route(data, peer)
              if #data < 3 then return nil end
              if data:sub(1, 3) == "\0\1\2" and peer == "127.0.0.1:40000" then
                return { cluster = "binary" }
              end
              return { remote = "localhost:9000", data = "changed", reply = "hi\0" }
            end"#;
        assert_eq!(route(source, b"\0\x01").unwrap(), Decision::Wait);
        assert_eq!(
            route(source, b"\0\x01\x02").unwrap(),
            (connect(Target::Cluster("binary".to_string())))
        );
        assert_eq!(
            route(source, b"other").unwrap(),
            (Decision::Connect {
                target: Target::Remote("localhost:9000".to_string()),
                data: Some(b"changed".to_vec()),
                reply: Some(b"hi\0".to_vec()),
            })
        );
    }

    #[test]
    fn close_and_file_decisions() {
        let close = "function route(d, p) return { close = true } end";
        assert_eq!(route(close, b"x").unwrap(), (Decision::Close(Vec::new())));
        let farewell = "function route(d, p) return { close = 'bye\\n' } end";
        assert_eq!(
            route(farewell, b"x").unwrap(),
            (Decision::Close(b"bye\n".to_vec()))
        );
        let file = "function route(d, p)
                      return { file = '/srv/motd', reply = 'R', offset = 2, nbytes = 10 }
                    end";
        assert_eq!(
            route(file, b"x").unwrap(),
            (Decision::File {
                path: PathBuf::from("/srv/motd"),
                reply: Some(b"R".to_vec()),
                offset: 2,
                nbytes: Some(10),
            })
        );
    }

    #[test]
    fn results_outside_the_contract_are_errors() {
        for (result, expected) in [
            ("42", "returned a integer, not nil or a table"),
            (
                "{ cluster = 'a', remote = 'b:1' }",
                "2 of cluster, remote, close and file",
            ),
            ("{}", "0 of cluster, remote, close and file"),
            (
                "{ cluster = 'a', colour = 'red' }",
                "`colour` as an unknown key",
            ),
            ("{ cluster = 1 }", "`cluster` as a integer, not a string"),
            (
                "{ cluster = 'a', offset = 3 }",
                "offset or nbytes without file",
            ),
            (
                "{ file = '/f', offset = -1 }",
                "`offset` as a negative number",
            ),
        ] {
            let source = format!("function route(d, p) return {result} end");
            let error = route(&source, b"x").unwrap_err().to_string();
            assert!(error.contains(expected), "{result}: {error}");
        }
    }

    #[test]
    fn a_script_that_loops_runs_out_of_budget_and_the_next_call_runs_again() {
        let source = "calls = 0
                      function route(d, p)
                        calls = calls + 1
                        if calls == 1 then while true do end end
                        return { cluster = 'a' }
                      end";
        let script = script(source).unwrap();
        let error = script.route(b"x", peer()).unwrap_err();
        let ScriptError::Call { source, .. } = &error else {
            panic!("not a call error: {error}");
        };
        assert!(
            source.to_string().contains("instruction budget exhausted"),
            "{source}"
        );
        assert_eq!(
            script.route(b"x", peer()).unwrap(),
            (connect(Target::Cluster("a".to_string())))
        );
        let error = self::script("while true do end function route() end").unwrap_err();
        assert!(matches!(error, ScriptError::Load { .. }), "{error}");
    }

    #[test]
    fn a_script_that_eats_memory_is_stopped() {
        let source = "function route(d, p)
                        local t = {}
                        for i = 1, 100 do t[i] = string.rep('x', 1024 * 1024) end
                        return { cluster = 'a' }
                      end";
        let error = route(source, b"x").unwrap_err();
        let ScriptError::Call { source, .. } = &error else {
            panic!("not a call error: {error}");
        };
        assert!(matches!(source, mlua::Error::MemoryError(_)), "{source}");
    }

    #[test]
    fn the_sandbox_has_no_io_os_nor_loaders() {
        for name in [
            "io", "os", "package", "debug", "require", "load", "dofile", "loadfile",
        ] {
            let source = format!(
                "function route(d, p) if {name} ~= nil then return {{ close = true }} end \
                 return {{ cluster = 'sandboxed' }} end"
            );
            assert_eq!(
                route(&source, b"x").unwrap(),
                (connect(Target::Cluster("sandboxed".to_string()))),
                "{name} is reachable"
            );
        }
    }

    #[test]
    fn load_errors_name_the_script_and_line() {
        let error = script("function route(d, p)\n  return {\nend").unwrap_err();
        let message = format!("{error}: {}", std::error::Error::source(&error).unwrap());
        assert!(
            message.starts_with("script test.lua does not load"),
            "{message}"
        );
        assert!(message.contains("test.lua:3:"), "{message}");
        let error = script("x = 1").unwrap_err();
        assert_eq!(
            error.to_string(),
            "script test.lua defines no function `route(data, peer)`"
        );
        let error = route("function route(d, p) error('boom') end", b"x").unwrap_err();
        let message = std::error::Error::source(&error).unwrap().to_string();
        assert!(message.contains("test.lua:1: boom"), "{message}");
    }

    #[test]
    fn proxy_error_is_called_when_defined() {
        let source = "seen = nil
                      function route(d, p) if seen then return { close = seen } end end
                      function proxy_error(peer, message) seen = peer .. ' ' .. message end";
        let script = script(source).unwrap();
        script.proxy_error(peer(), "connection refused").unwrap();
        assert_eq!(
            script.route(b"x", peer()).unwrap(),
            (Decision::Close(b"127.0.0.1:40000 connection refused".to_vec()))
        );
        let without = self::script("function route(d, p) end").unwrap();
        without.proxy_error(peer(), "refused").unwrap();
    }
}
