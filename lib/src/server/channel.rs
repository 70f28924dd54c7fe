//! The worker's end of the command channel: reading orders as they come (a line that is no
//! order is refused, or counted against the open batch), and writing responses and events.

use log::{info, warn};
use sozu_command_lib::{
    channel::ChannelError,
    request::read_worker_request,
    response::{Event, Response, ResponseContent},
};

use super::{EVENT_RESPONSE_ID, Run, Server};
use crate::session::endpoint::Ready;

impl Server {
    pub(super) fn send_events(&mut self) {
        for event in self.backends.take_events() {
            info!("event {:?} for cluster {:?}", event.kind, event.cluster_id);
            self.respond(event_response(event));
        }
    }

    pub(super) fn channel_ready(&mut self, ready: Ready) {
        if ready.contains(Ready::WRITABLE) {
            if let Err(error) = self.channel.writable() {
                warn!("command channel write failed: {error}");
            }
        }
        if ready.contains(Ready::READABLE) || ready.contains(Ready::HUP) {
            if let Err(error) = self.channel.readable() {
                warn!("command channel read failed: {error}");
            }
            loop {
                match self.channel.read_message_as(read_worker_request) {
                    Ok(Some(request)) => self.handle_request(request),
                    Ok(None) => break,
                    Err(ChannelError::InvalidMessage { id, source, .. }) => {
                        let id = id.unwrap_or_default();
                        self.refuse_line(id, format!("invalid message: {source}"));
                    }
                    Err(error) if error.is_fatal() => {
                        warn!("command channel failed: {error}");
                        break;
                    }
                    Err(error) => self.refuse_line(String::new(), error.to_string()),
                }
                if self.run == Run::Stopped {
                    break;
                }
            }
        }
    }

    /// A line of the channel that is no order: one more refusal of the open batch, else
    /// answered at once.
    pub(super) fn refuse_line(&mut self, id: String, message: String) {
        match &mut self.batch {
            Some(batch) => batch.record("unreadable line", Err(message)),
            None => self.respond(Response::failure(id, message)),
        }
    }

    pub(super) fn respond(&mut self, response: Response) {
        if let Err(error) = self.channel.write_message(&response) {
            warn!("cannot send response {}: {error}", response.id);
        }
    }

    pub(super) fn flush_channel(&mut self) {
        let _ = self.channel.blocking();
        let _ = self.channel.writable();
    }
}

/// An event as the channel carries it: a response under [`EVENT_RESPONSE_ID`].
pub(super) fn event_response(event: Event) -> Response {
    Response::ok(EVENT_RESPONSE_ID, Some(ResponseContent::Event(event)))
}

#[cfg(test)]
mod tests;
