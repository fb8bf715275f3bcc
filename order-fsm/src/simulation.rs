//! Simulated time in each state: how long the runner holds an order before taking the
//! state's automatic advance, and the load levels of the original systems.

use std::time::Duration;

use rand::Rng;

/// A simulated load level of the original systems: higher load, longer processing per state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoadLevel {
    /// 50–150 ms per state.
    Low,
    /// 150–500 ms per state.
    Medium,
    /// 0.5–1.5 s per state.
    High,
}

impl LoadLevel {
    /// The range a dwell time is drawn from at this level.
    pub fn range(self) -> (Duration, Duration) {
        let ms = Duration::from_millis;
        match self {
            Self::Low => (ms(50), ms(150)),
            Self::Medium => (ms(150), ms(500)),
            Self::High => (ms(500), ms(1_500)),
        }
    }
}

impl std::str::FromStr for LoadLevel {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Ok(Self::Low),
            "medium" => Ok(Self::Medium),
            "high" => Ok(Self::High),
            _ => Err(crate::Error::invalid_field(
                "load",
                "must be low, medium or high",
            )),
        }
    }
}

/// How long the runner holds an order in a state before taking the state's automatic
/// advance. Waiting happens on timers; no worker sleeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dwell {
    /// Advance at once.
    #[default]
    None,
    /// Always the same time.
    Fixed(Duration),
    /// Uniformly random in `[min, max]`.
    Uniform {
        /// Shortest.
        min: Duration,
        /// Longest.
        max: Duration,
    },
    /// Uniform in the range of a load level.
    Load(LoadLevel),
}

impl Dwell {
    /// Draws one dwell time.
    pub(crate) fn sample(&self, rng: &mut impl Rng) -> Duration {
        match *self {
            Self::None => Duration::ZERO,
            Self::Fixed(d) => d,
            Self::Uniform { min, max } => uniform(rng, min, max),
            Self::Load(level) => {
                let (min, max) = level.range();
                uniform(rng, min, max)
            }
        }
    }

    /// Whether every dwell is zero.
    pub fn is_none(&self) -> bool {
        matches!(self, Self::None | Self::Fixed(Duration::ZERO))
    }
}

fn uniform(rng: &mut impl Rng, min: Duration, max: Duration) -> Duration {
    if max <= min {
        return min;
    }
    let span = (max - min).as_micros() as u64;
    min + Duration::from_micros(rng.gen_range(0..=span))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn samples_stay_in_range() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let ms = Duration::from_millis;
        assert_eq!(Dwell::None.sample(&mut rng), Duration::ZERO);
        assert_eq!(Dwell::Fixed(ms(3)).sample(&mut rng), ms(3));
        for level in [LoadLevel::Low, LoadLevel::Medium, LoadLevel::High] {
            let (min, max) = level.range();
            for _ in 0..1_000 {
                let d = Dwell::Load(level).sample(&mut rng);
                assert!(d >= min && d <= max, "{level:?}: {d:?}");
            }
        }
        let d = Dwell::Uniform {
            min: ms(5),
            max: ms(5),
        }
        .sample(&mut rng);
        assert_eq!(d, ms(5));
        assert_eq!("HIGH".parse::<LoadLevel>().unwrap(), LoadLevel::High);
        assert!("extreme".parse::<LoadLevel>().is_err());
    }
}
