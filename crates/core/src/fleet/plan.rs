//! Planning a fleet call: device lists cut into `deviceId IN [...]` conditions that fit the
//! hub's limit, grouped in waves, each hub job named from the base id.

use super::{Target, MAX_JOB_ID_LEN};
use crate::error::Error;

/// One hub job of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedJob {
    pub job_id: String,
    pub query_condition: String,
    /// The devices it targets (empty when the target is a bare query condition).
    pub devices: Vec<String>,
}

/// Device counts per wave: `waves` with its last size repeated until `total` is covered.
pub fn wave_sizes(total: usize, waves: &[usize]) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut left = total;
    let mut i = 0;
    while left > 0 {
        let size = waves
            .get(i)
            .or(waves.last())
            .copied()
            .unwrap_or(left)
            .max(1);
        sizes.push(size.min(left));
        left -= size.min(left);
        i += 1;
    }
    sizes
}

const IN_PREFIX: &str = "deviceId IN [";

/// `deviceId IN ['a','b']`, each id a query-language string literal.
pub fn in_condition(ids: &[String]) -> String {
    let literals: Vec<String> = ids
        .iter()
        .map(|id| crate::devices::query_string_literal(id))
        .collect();
    format!("{IN_PREFIX}{}]", literals.join(","))
}

/// Splits `ids` into consecutive groups whose `deviceId IN [...]` condition has at most
/// `limit` bytes.
pub fn split_by_condition_size(ids: &[String], limit: usize) -> Result<Vec<Vec<String>>, Error> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut size = IN_PREFIX.len() + 1;
    for id in ids {
        let literal = crate::devices::query_string_literal(id).len();
        if IN_PREFIX.len() + 1 + literal > limit {
            return Err(Error::argument(format!(
                "The device id {id:?} alone makes a condition longer than {limit} bytes"
            )));
        }
        let added = literal + usize::from(!current.is_empty());
        if size + added > limit {
            groups.push(std::mem::take(&mut current));
            size = IN_PREFIX.len() + 1;
        }
        size += literal + usize::from(!current.is_empty());
        current.push(id.clone());
    }
    if !current.is_empty() {
        groups.push(current);
    }
    Ok(groups)
}

/// The hub jobs, wave by wave. Ids are `<base>-<wave>-<part>` (1-based) unless the whole plan
/// is one job, which gets the base id itself.
pub fn plan(
    base: &str,
    target: &Target,
    waves: &[usize],
    limit: usize,
) -> Result<Vec<Vec<PlannedJob>>, Error> {
    let ids = match target {
        Target::Query(condition) => {
            return Ok(vec![vec![PlannedJob {
                job_id: base.to_string(),
                query_condition: condition.clone(),
                devices: Vec::new(),
            }]])
        }
        Target::Devices(ids) => ids,
    };
    let mut groups_per_wave = Vec::new();
    let mut start = 0;
    for size in wave_sizes(ids.len(), waves) {
        groups_per_wave.push(split_by_condition_size(&ids[start..start + size], limit)?);
        start += size;
    }
    let single = groups_per_wave.len() == 1 && groups_per_wave[0].len() == 1;
    let mut planned = Vec::new();
    for (w, groups) in groups_per_wave.into_iter().enumerate() {
        let mut jobs = Vec::new();
        for (p, devices) in groups.into_iter().enumerate() {
            let job_id = if single {
                base.to_string()
            } else {
                format!("{base}-{}-{}", w + 1, p + 1)
            };
            if job_id.len() > MAX_JOB_ID_LEN {
                return Err(Error::argument(format!(
                    "The job id {job_id:?} derived from options.jobId is longer than {MAX_JOB_ID_LEN} characters: use a shorter jobId"
                )));
            }
            jobs.push(PlannedJob {
                job_id,
                query_condition: in_condition(&devices),
                devices,
            });
        }
        planned.push(jobs);
    }
    Ok(planned)
}

/// Whether a wave's failed / attempted ratio passes `threshold`.
pub fn wave_failed(succeeded: u64, failed: u64, threshold: Option<f64>) -> bool {
    let attempted = succeeded + failed;
    match threshold {
        Some(t) if attempted > 0 => failed as f64 / attempted as f64 > t,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("device-{i:05}")).collect()
    }

    #[test]
    fn wave_sizes_repeat_the_last() {
        assert_eq!(wave_sizes(25, &[1, 4, 10]), vec![1, 4, 10, 10]);
        assert_eq!(wave_sizes(3, &[1, 4, 10]), vec![1, 2]);
        assert_eq!(wave_sizes(7, &[]), vec![7]);
        assert_eq!(wave_sizes(0, &[5]), Vec::<usize>::new());
    }

    #[test]
    fn conditions_quote_and_escape_ids() {
        let c = in_condition(&["a".into(), "o'brien".into(), "back\\slash".into()]);
        assert_eq!(c, r"deviceId IN ['a','o\'brien','back\\slash']");
    }

    #[test]
    fn splitting_fits_the_limit_and_keeps_every_id_once() {
        let all = ids(4000);
        let groups = split_by_condition_size(&all, 8000).unwrap();
        assert!(groups.len() >= 7, "{}", groups.len());
        for g in &groups {
            let len = in_condition(g).len();
            assert!(len <= 8000, "{len}");
        }
        // Greedy: no group could take the next id.
        for pair in groups.windows(2) {
            let mut more = pair[0].clone();
            more.push(pair[1][0].clone());
            assert!(in_condition(&more).len() > 8000);
        }
        let flat: Vec<String> = groups.concat();
        assert_eq!(flat, all);
        // An id that cannot fit at all is an error, not a silent drop.
        assert!(split_by_condition_size(&["x".repeat(100)], 50).is_err());
        // Exactly at the limit.
        let one = vec!["abc".to_string()];
        assert_eq!(
            split_by_condition_size(&one, in_condition(&one).len())
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn plan_names_jobs_from_the_base_id() {
        let target = Target::Devices(ids(30));
        let single = plan("base", &target, &[], 8000).unwrap();
        assert_eq!(single.len(), 1);
        assert_eq!(single[0][0].job_id, "base");
        let waves = plan("base", &target, &[1, 9, 10], 100).unwrap();
        assert_eq!(waves.len(), 4);
        assert_eq!(waves[0].len(), 1);
        assert_eq!(waves[0][0].job_id, "base-1-1");
        assert!(waves[1].len() > 1, "100 bytes hold fewer than 9 ids");
        assert_eq!(waves[1][1].job_id, "base-2-2");
        let every: Vec<&String> = waves.iter().flatten().flat_map(|j| &j.devices).collect();
        assert_eq!(every.len(), 30);
        assert!(plan(&"b".repeat(62), &target, &[1], 8000).is_err());
        let q = plan("q", &Target::Query("tags.a = 1".into()), &[], 8000).unwrap();
        assert_eq!(q[0][0].query_condition, "tags.a = 1");
    }

    #[test]
    fn threshold() {
        assert!(!wave_failed(9, 1, Some(0.1)));
        assert!(wave_failed(8, 2, Some(0.1)));
        assert!(!wave_failed(0, 0, Some(0.0)));
        assert!(!wave_failed(0, 5, None));
    }
}
