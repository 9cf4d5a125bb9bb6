//! When the processor may write a reply straight to its connection instead
//! of through the watch dispatcher: only when everything it handed the
//! dispatcher before is already on the connections' write queues, so a
//! reply can never overtake a notification or an earlier reply. A lone
//! request then crosses one thread fewer (each crossing is a wake-up).

use std::sync::atomic::{AtomicU64, Ordering};

/// Batches the processor handed to the dispatcher whose frames are not yet
/// queued on their connections.
#[derive(Default)]
pub struct DeliveryGate {
    in_transit: AtomicU64,
}

impl DeliveryGate {
    /// The processor, before sending the dispatcher a batch.
    pub fn handed_over(&self) {
        self.in_transit.fetch_add(1, Ordering::Relaxed);
    }

    /// The dispatcher, once `batches` handed over are on the write queues.
    pub fn delivered(&self, batches: u64) {
        if batches > 0 {
            // Release: the frames queued before are seen by whoever reads zero.
            self.in_transit.fetch_sub(batches, Ordering::Release);
        }
    }

    /// Nothing handed to the dispatcher is still on its way.
    pub fn is_clear(&self) -> bool {
        self.in_transit.load(Ordering::Acquire) == 0
    }
}

/// Marks batches delivered when dropped: each I/O thread's share of a flush
/// holds a clone, so the last one to finish writing releases the gate.
pub struct Delivered {
    gate: std::sync::Arc<DeliveryGate>,
    batches: u64,
}

impl Delivered {
    pub fn new(gate: std::sync::Arc<DeliveryGate>, batches: u64) -> Delivered {
        Delivered { gate, batches }
    }
}

impl Drop for Delivered {
    fn drop(&mut self) {
        self.gate.delivered(self.batches);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_gate_opens_only_when_every_batch_is_delivered() {
        let gate = Arc::new(DeliveryGate::default());
        assert!(gate.is_clear());
        gate.handed_over();
        gate.handed_over();
        assert!(!gate.is_clear());
        let token = Arc::new(Delivered::new(gate.clone(), 2));
        let share = token.clone();
        drop(token);
        assert!(!gate.is_clear(), "one I/O thread's share is still writing");
        drop(share);
        assert!(gate.is_clear());
    }
}
