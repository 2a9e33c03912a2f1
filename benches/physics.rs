//! Throughput of `model::physics::predict` (validation + fan + coil), in predictions/s.
//!
//! Two fixed sets of 1024 inputs: dry-only (humid enough to look realistic but with the coil
//! surface above the dew point) and the realistic mix of dry, dry(max) and wet points that the
//! parity test samples from. The wet branch costs a fixed-point loop, so the mix is the
//! figure that matters for sizing.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use twinflow::model::physics::{predict, CoilInputs, PhysicsParams, Regime};

const N: usize = 1024;

/// Draws inputs until `N` are accepted by `keep`.
fn inputs(p: &PhysicsParams, seed: u64, keep: impl Fn(Regime) -> bool) -> Vec<CoilInputs> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v = Vec::with_capacity(N);
    while v.len() < N {
        let x = CoilInputs::random_valid(&mut rng);
        if keep(predict(p, &x).expect("valid input").regime) {
            v.push(x);
        }
    }
    v
}

fn bench(c: &mut Criterion) {
    let p = PhysicsParams::default();
    let dry = inputs(&p, 1, |r| r == Regime::Dry);
    let mixed = inputs(&p, 2, |_| true);
    let count = |r| {
        mixed
            .iter()
            .filter(|x| predict(&p, x).unwrap().regime == r)
            .count()
    };
    eprintln!(
        "mixed set: {} dry, {} dry(max), {} wet",
        count(Regime::Dry),
        count(Regime::DryMax),
        count(Regime::Wet)
    );
    let mut g = c.benchmark_group("physics_predict");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20)
        .throughput(Throughput::Elements(N as u64));
    for (name, set) in [("dry", &dry), ("mixed", &mixed)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut acc = 0.0;
                for x in set.iter() {
                    acc += predict(&p, black_box(x)).map_or(0.0, |s| s.q_total);
                }
                black_box(acc)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
