//! Planning the adaptive ladder: which rungs to encode for a given source.
//!
//! Rules: never above the source resolution, aspect ratio kept, both dimensions even. A
//! rung is named by its short side (`720p` is 1280x720 for landscape and 720x1280 for
//! portrait), as players and people expect. A source smaller than every requested rung
//! still publishes: it gets one rung at its own size.

/// A rung as asked for: its short side and target video bitrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RungSpec {
    pub short_side: u32,
    pub video_bitrate: u64,
}

/// The default ladder: 1080p, 720p, 480p, 360p.
pub const DEFAULT_LADDER: [RungSpec; 4] = [
    RungSpec {
        short_side: 1080,
        video_bitrate: 5_000_000,
    },
    RungSpec {
        short_side: 720,
        video_bitrate: 2_800_000,
    },
    RungSpec {
        short_side: 480,
        video_bitrate: 1_400_000,
    },
    RungSpec {
        short_side: 360,
        video_bitrate: 800_000,
    },
];

/// Bitrates for rungs named on the command line that are not in the default ladder,
/// interpolated by pixel count from 360p's.
fn bitrate_for(short_side: u32) -> u64 {
    DEFAULT_LADDER
        .iter()
        .find(|r| r.short_side == short_side)
        .map(|r| r.video_bitrate)
        .unwrap_or_else(|| {
            let pixels = f64::from(short_side) * f64::from(short_side);
            ((800_000.0 * pixels / (360.0 * 360.0)) as u64).clamp(150_000, 40_000_000)
        })
}

/// A rung to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRung {
    /// Track id and URL segment, e.g. `720p`.
    pub id: String,
    pub width: u32,
    pub height: u32,
    pub video_bitrate: u64,
}

/// Why a ladder string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LadderError {
    #[error("ladder entry {0:?} is not of the form 720p (a height from 144 to 4320 followed by p)")]
    BadEntry(String),
    #[error("the ladder is empty")]
    Empty,
    #[error("the ladder has more than 8 rungs")]
    TooMany,
}

/// Parses `1080p,720p,480p`.
pub fn parse_ladder(text: &str) -> Result<Vec<RungSpec>, LadderError> {
    let mut specs = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let short_side: u32 = entry
            .strip_suffix('p')
            .and_then(|n| n.parse().ok())
            .filter(|n| (144..=4320).contains(n))
            .ok_or_else(|| LadderError::BadEntry(entry.to_string()))?;
        if !specs.iter().any(|s: &RungSpec| s.short_side == short_side) {
            specs.push(RungSpec {
                short_side,
                video_bitrate: bitrate_for(short_side),
            });
        }
    }
    if specs.is_empty() {
        return Err(LadderError::Empty);
    }
    if specs.len() > 8 {
        return Err(LadderError::TooMany);
    }
    specs.sort_by_key(|s| std::cmp::Reverse(s.short_side));
    Ok(specs)
}

/// The rungs to encode for a source displayed at `width`x`height` (after rotation).
pub fn plan(width: u32, height: u32, specs: &[RungSpec]) -> Vec<PlannedRung> {
    let (width, height) = (width.max(2), height.max(2));
    let source_short = width.min(height);
    let portrait = height > width;
    let sized = |short: u32, bitrate: u64| {
        let short = even_floor(short.min(source_short));
        // The long side follows the source's aspect ratio, rounded to the nearest even.
        let long = if portrait {
            even_round(f64::from(height) * f64::from(short) / f64::from(width))
        } else {
            even_round(f64::from(width) * f64::from(short) / f64::from(height))
        };
        let (w, h) = if portrait {
            (short, long)
        } else {
            (long, short)
        };
        PlannedRung {
            id: format!("{short}p"),
            width: w,
            height: h,
            video_bitrate: bitrate,
        }
    };
    let mut rungs: Vec<PlannedRung> = specs
        .iter()
        .filter(|s| s.short_side <= source_short)
        .map(|s| sized(s.short_side, s.video_bitrate))
        .collect();
    if rungs.is_empty() {
        rungs.push(sized(source_short, bitrate_for(source_short)));
    }
    rungs.dedup_by(|a, b| a.width == b.width && a.height == b.height);
    rungs
}

fn even_floor(n: u32) -> u32 {
    (n & !1).max(2)
}

fn even_round(x: f64) -> u32 {
    ((x / 2.0).round() as u32 * 2).max(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_hd_gets_the_whole_ladder() {
        let rungs = plan(1920, 1080, &DEFAULT_LADDER);
        let dims: Vec<_> = rungs
            .iter()
            .map(|r| (r.id.as_str(), r.width, r.height))
            .collect();
        assert_eq!(
            dims,
            [
                ("1080p", 1920, 1080),
                ("720p", 1280, 720),
                ("480p", 854, 480),
                ("360p", 640, 360)
            ]
        );
    }

    #[test]
    fn never_above_the_source() {
        let rungs = plan(1280, 720, &DEFAULT_LADDER);
        assert_eq!(rungs[0].id, "720p");
        assert_eq!(rungs.len(), 3);
    }

    #[test]
    fn portrait_is_named_by_its_short_side() {
        let rungs = plan(1080, 1920, &DEFAULT_LADDER);
        assert_eq!((rungs[1].width, rungs[1].height), (720, 1280));
    }

    #[test]
    fn tiny_and_odd_sources_still_publish_with_even_sizes() {
        let rungs = plan(321, 241, &DEFAULT_LADDER);
        assert_eq!(rungs.len(), 1);
        let r = &rungs[0];
        assert_eq!((r.width % 2, r.height % 2), (0, 0));
        assert_eq!((r.width, r.height), (320, 240));
        assert_eq!(r.id, "240p");
    }

    #[test]
    fn ladder_strings() {
        let specs = parse_ladder("360p, 720p,720p").expect("valid");
        assert_eq!(
            specs.iter().map(|s| s.short_side).collect::<Vec<_>>(),
            [720, 360]
        );
        assert!(matches!(parse_ladder("720"), Err(LadderError::BadEntry(_))));
        assert!(matches!(
            parse_ladder("99999p"),
            Err(LadderError::BadEntry(_))
        ));
        assert_eq!(parse_ladder(" , "), Err(LadderError::Empty));
    }
}
