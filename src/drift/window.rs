//! A count-based sliding window that keeps its samples sorted as they arrive, so a window
//! comparison never sorts: one step is a binary search and a memmove of at most the window.

use std::collections::VecDeque;

/// The last `capacity` samples of one feature, in arrival order and sorted.
#[derive(Debug, Clone)]
pub struct SortedWindow {
    capacity: usize,
    arrival: VecDeque<f64>,
    sorted: Vec<f64>,
}

impl SortedWindow {
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "a window holds at least one sample");
        SortedWindow {
            capacity,
            arrival: VecDeque::with_capacity(capacity),
            sorted: Vec::with_capacity(capacity),
        }
    }

    /// Adds a finite sample, dropping the oldest when full; returns the dropped sample.
    /// Non-finite samples are refused (`Err` with the value): they have no place in an order.
    pub fn push(&mut self, x: f64) -> Result<Option<f64>, f64> {
        if !x.is_finite() {
            return Err(x);
        }
        let x = x + 0.0; // -0.0 -> 0.0, as everywhere in drift
        let dropped = if self.arrival.len() == self.capacity {
            let old = self.arrival.pop_front().expect("full window");
            let at = self.sorted.partition_point(|&v| v < old);
            debug_assert_eq!(self.sorted[at], old);
            self.sorted.remove(at);
            Some(old)
        } else {
            None
        };
        self.arrival.push_back(x);
        let at = self.sorted.partition_point(|&v| v <= x);
        self.sorted.insert(at, x);
        Ok(dropped)
    }

    /// Samples, ascending.
    pub fn sorted(&self) -> &[f64] {
        &self.sorted
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.sorted.len() == self.capacity
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn clear(&mut self) {
        self.arrival.clear();
        self.sorted.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_samples_sorted() {
        let mut w = SortedWindow::new(3);
        assert_eq!(w.push(5.0), Ok(None));
        assert_eq!(w.push(1.0), Ok(None));
        assert_eq!(w.push(3.0), Ok(None));
        assert!(w.is_full());
        assert_eq!(w.sorted(), &[1.0, 3.0, 5.0]);
        assert_eq!(w.push(2.0), Ok(Some(5.0)));
        assert_eq!(w.sorted(), &[1.0, 2.0, 3.0]);
        assert_eq!(w.push(3.0), Ok(Some(1.0)));
        assert_eq!(w.sorted(), &[2.0, 3.0, 3.0]);
        assert_eq!(w.push(f64::NAN).map_err(|x| x.is_nan()), Err(true));
        assert_eq!(w.len(), 3);
        w.clear();
        assert!(w.is_empty());
    }

    #[test]
    fn matches_a_sorted_copy_of_the_tail() {
        let mut w = SortedWindow::new(50);
        let data: Vec<f64> = (0..1000).map(|i| ((i * 7919) % 101) as f64 / 4.0).collect();
        for (i, &x) in data.iter().enumerate() {
            w.push(x).unwrap();
            let mut tail = data[i.saturating_sub(49)..=i].to_vec();
            tail.sort_by(f64::total_cmp);
            assert_eq!(w.sorted(), &tail[..]);
        }
    }
}
