//! The step graph of a plan (design §10): each step names the earlier steps whose outputs it
//! reads ([`Step::deps`]); from it come the critical path (the longest chain of estimates), the
//! wall time on K workers, and the subset of a plan that `--only` selects.

use std::collections::{BTreeSet, HashMap};

use anyhow::{bail, Result};

use super::plan::Step;

/// Index of every step id in `steps`.
fn index(steps: &[Step]) -> HashMap<&str, usize> {
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect()
}

/// Indices of each step's dependencies that are in `steps` (a dependency outside the list,
/// e.g. one already done, is no edge).
fn edges(steps: &[Step]) -> Vec<Vec<usize>> {
    let idx = index(steps);
    steps
        .iter()
        .map(|s| {
            s.deps
                .iter()
                .filter_map(|d| idx.get(d.as_str()).copied())
                .collect()
        })
        .collect()
}

/// The steps named in `wanted` and every step they read from, transitively, in plan order.
/// An unknown id is an error naming it.
pub fn with_dependencies(steps: &[Step], wanted: &[String]) -> Result<Vec<Step>> {
    let idx = index(steps);
    let mut keep = BTreeSet::new();
    let mut todo = Vec::new();
    for w in wanted {
        match idx.get(w.as_str()) {
            Some(&i) => todo.push(i),
            None => bail!("--only: the plan has no step `{w}` (`--plan` lists the step ids)"),
        }
    }
    while let Some(i) = todo.pop() {
        if keep.insert(i) {
            todo.extend(steps[i].deps.iter().filter_map(|d| idx.get(d.as_str())));
        }
    }
    Ok(keep.into_iter().map(|i| steps[i].clone()).collect())
}

/// The critical path: the chain of steps, each reading the one before, with the largest sum of
/// estimates (no number of workers finishes the plan sooner). Returns the ids and the seconds.
pub fn critical_path(steps: &[Step]) -> (Vec<String>, f64) {
    let deps = edges(steps);
    let mut finish = vec![0.0f64; steps.len()];
    let mut before: Vec<Option<usize>> = vec![None; steps.len()];
    for i in 0..steps.len() {
        let mut start = 0.0;
        for &d in &deps[i] {
            if finish[d] > start {
                start = finish[d];
                before[i] = Some(d);
            }
        }
        finish[i] = start + steps[i].estimate_s;
    }
    let Some(mut last) = (0..steps.len()).max_by(|&a, &b| finish[a].total_cmp(&finish[b])) else {
        return (Vec::new(), 0.0);
    };
    let total = finish[last];
    let mut path = vec![steps[last].id.clone()];
    while let Some(b) = before[last] {
        path.push(steps[b].id.clone());
        last = b;
    }
    path.reverse();
    (path, total)
}

/// Seconds from each step's start to the end of the plan along its longest chain of dependants
/// (the priority of list scheduling: the step that holds up the most goes first).
pub fn remaining_path(steps: &[Step]) -> Vec<f64> {
    let deps = edges(steps);
    let mut level: Vec<f64> = steps.iter().map(|s| s.estimate_s).collect();
    for i in (0..steps.len()).rev() {
        for &d in &deps[i] {
            level[d] = level[d].max(steps[d].estimate_s + level[i]);
        }
    }
    level
}

/// Estimated wall time of the plan on `workers` workers, each running one step at a time at the
/// estimate's speed: list scheduling that starts, whenever a worker is free, the ready step
/// with the longest remaining path.
pub fn wall_time(steps: &[Step], workers: usize) -> f64 {
    let workers = workers.max(1);
    let deps = edges(steps);
    let priority = remaining_path(steps);
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependants = vec![Vec::new(); steps.len()];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependants[d].push(i);
        }
    }
    let mut ready: Vec<usize> = (0..steps.len()).filter(|&i| waiting[i] == 0).collect();
    // (finish time, step) of the running steps
    let mut running: Vec<(f64, usize)> = Vec::new();
    let mut now = 0.0f64;
    let mut done = 0;
    while done < steps.len() {
        ready.sort_by(|&a, &b| priority[a].total_cmp(&priority[b]).then(b.cmp(&a)));
        while running.len() < workers {
            let Some(i) = ready.pop() else { break };
            running.push((now + steps[i].estimate_s, i));
        }
        let Some(k) = (0..running.len()).min_by(|&a, &b| running[a].0.total_cmp(&running[b].0))
        else {
            break; // nothing runs and nothing is ready: cannot happen in a graph from `steps`
        };
        let (t, i) = running.swap_remove(k);
        now = t;
        done += 1;
        for &j in &dependants[i] {
            waiting[j] -= 1;
            if waiting[j] == 0 {
                ready.push(j);
            }
        }
    }
    now
}

#[cfg(test)]
mod tests {
    use super::super::plan::{steps, Preset, PresetConfig, StepKind};
    use super::*;

    fn step(id: &str, est: f64, deps: &[&str]) -> Step {
        Step {
            id: id.into(),
            kind: StepKind::NewTask { task: 0 },
            args: Vec::new(),
            out: None,
            resumable: false,
            estimate_s: est,
            deps: deps.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn every_step_reads_what_earlier_steps_wrote_and_nothing_else() {
        for preset in [Preset::Tiny, Preset::Smoke, Preset::Fashion, Preset::Paper] {
            let plan = steps(&PresetConfig::of(preset));
            let pos = index(&plan);
            for (i, s) in plan.iter().enumerate() {
                for d in &s.deps {
                    assert!(pos[d.as_str()] < i, "{preset:?}: {} needs later {d}", s.id);
                }
            }
        }
        let plan = steps(&PresetConfig::of(Preset::Smoke));
        let deps = |id: &str| plan.iter().find(|s| s.id == id).unwrap().deps.clone();
        assert!(deps("train-simcnn-est1").is_empty());
        assert_eq!(
            deps("decompose-grad-simcnn-est1"),
            vec!["train-simcnn-est1"]
        );
        assert_eq!(
            deps("compose-grad-simcnn-est1"),
            vec!["train-simcnn-est1", "decompose-grad-simcnn-est1"]
        );
        assert_eq!(
            deps("patch-ga-3"),
            vec!["train-weak", "decompose-ga-simcnn-strong"]
        );
        // a new task reads modules named NAME=PATH
        assert_eq!(
            deps("new-task-0"),
            vec!["decompose-grad-simcnn-est1", "decompose-grad-simcnn-est2"]
        );
        let intra = deps("select-intra");
        assert!(intra.contains(&"train-simcnn-est2".to_string()));
        assert!(intra.contains(&"decompose-grad-simcnn-est2".to_string()));
    }

    #[test]
    fn critical_path_and_wall_time_follow_the_graph() {
        // a → b → d and a → c → d, e alone: critical path a, c, d (1 + 5 + 1)
        let plan = vec![
            step("a", 1.0, &[]),
            step("b", 2.0, &["a"]),
            step("c", 5.0, &["a"]),
            step("d", 1.0, &["b", "c"]),
            step("e", 4.0, &[]),
        ];
        let (path, secs) = critical_path(&plan);
        assert_eq!(path, vec!["a", "c", "d"]);
        assert_eq!(secs, 7.0);
        assert_eq!(wall_time(&plan, 1), 13.0);
        // two workers: a then c on one, e then b on the other, d after c: 7 s
        assert_eq!(wall_time(&plan, 2), 7.0);
        assert_eq!(wall_time(&plan, 50), 7.0);
        let real = steps(&PresetConfig::of(Preset::Paper));
        let total: f64 = real.iter().map(|s| s.estimate_s).sum();
        let (_, cp) = critical_path(&real);
        assert!((wall_time(&real, 1) - total).abs() < 1e-6 * total);
        let w10 = wall_time(&real, 10);
        assert!(w10 < total && w10 >= cp && w10 >= total / 10.0 - 1e-6);
    }

    #[test]
    fn only_keeps_the_named_steps_and_what_they_read() {
        let plan = steps(&PresetConfig::of(Preset::Tiny));
        let picked = with_dependencies(
            &plan,
            &["compose-grad-simcnn-est1".into(), "train-weak".into()],
        )
        .unwrap();
        let ids: Vec<&str> = picked.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            vec![
                "train-simcnn-est1",
                "train-weak",
                "decompose-grad-simcnn-est1",
                "compose-grad-simcnn-est1"
            ]
        );
        let err = with_dependencies(&plan, &["no-such-step".into()]).unwrap_err();
        assert!(err.to_string().contains("no-such-step"), "{err}");
    }
}
