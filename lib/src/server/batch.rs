//! Batches of orders, `BEGIN_BATCH` … `END_BATCH`: how the main process hands a new worker its
//! whole state. Each state change of a batch is checked and applied as a lone one is, and a
//! refused one changes nothing and does not stop the others; only the answers differ: the
//! batch gets one, at `END_BATCH`, OK or FAILURE naming each refused order, so 100,000 orders
//! cost one answer instead of 100,000 (and the main process reads one).

use sozu_command_lib::response::Response;

/// Most refusals an answer names; the others are counted.
const MAX_NAMED_REFUSALS: usize = 20;

/// An open batch: what its state changes gave so far.
#[derive(Debug, Default)]
pub(super) struct Batch {
    /// State changes (and unreadable lines) seen since `BEGIN_BATCH`.
    orders: usize,
    /// The first refusals, each naming its order by position in the batch and by name.
    named: Vec<String>,
    /// Every refusal, named or not.
    refused: usize,
}

impl Batch {
    /// Records what became of the next order of the batch, `what` naming it.
    pub(super) fn record(&mut self, what: &str, outcome: Result<(), String>) {
        self.orders += 1;
        if let Err(why) = outcome {
            self.refused += 1;
            if self.named.len() < MAX_NAMED_REFUSALS {
                self.named
                    .push(format!("order {} ({what}): {why}", self.orders));
            }
        }
    }

    /// The one answer of the batch, under the id of its `END_BATCH`.
    pub(super) fn into_response(self, id: String) -> Response {
        if self.refused == 0 {
            let mut response = Response::ok(id, None);
            response.message = format!("{} orders applied", self.orders);
            return response;
        }
        let mut message = format!(
            "{} of {} orders refused: {}",
            self.refused,
            self.orders,
            self.named.join("; ")
        );
        if self.refused > self.named.len() {
            message.push_str(&format!(
                "; and {} more",
                self.refused.saturating_sub(self.named.len())
            ));
        }
        Response::failure(id, message)
    }
}

#[cfg(test)]
mod tests {
    use sozu_command_lib::response::ResponseStatus;

    use super::*;

    #[test]
    fn a_batch_without_refusals_is_ok_and_counts_its_orders() {
        let mut batch = Batch::default();
        batch.record("ADD_CLUSTER", Ok(()));
        batch.record("ADD_BACKEND", Ok(()));
        let response = batch.into_response("7".to_string());
        assert_eq!(response.status, ResponseStatus::Ok);
        assert_eq!(response.id, "7");
        assert_eq!(response.message, "2 orders applied");
    }

    #[test]
    fn refusals_are_named_by_position_and_the_excess_counted() {
        let mut batch = Batch::default();
        batch.record("ADD_CLUSTER", Ok(()));
        for _ in 0..MAX_NAMED_REFUSALS + 3 {
            batch.record("ADD_BACKEND", Err("no cluster `c`".to_string()));
        }
        let response = batch.into_response("7".to_string());
        assert_eq!(response.status, ResponseStatus::Failure);
        assert!(
            response
                .message
                .starts_with("23 of 24 orders refused: order 2 (ADD_BACKEND): no cluster `c`; "),
            "{}",
            response.message
        );
        assert!(
            response.message.ends_with("; and 3 more"),
            "{}",
            response.message
        );
    }
}
