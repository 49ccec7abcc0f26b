//! References between the jobs of a plan (`job://ID`, shot chains); the main function here is [`link`].
//!
//! A content item may name another job of the plan instead of a URL: `job://ID` in
//! `first_frame`, `last_frame` or `reference_image` stands for that job's last frame, in
//! `reference_video` for its video, in `draft_task` for its (draft) task. [`link`] checks every
//! reference before anything is sent (an unknown job, a job referring to itself, a cycle, a
//! `draft_task` naming a job that is no draft), sets `return_last_frame` on every job whose
//! last frame is asked for, gives each job of a chain an identity covering the requests of the
//! jobs it refers to, and names each chain's root (which keeps a chain in one `--shard`).
//! [`chains`] groups the jobs into chains for `plan`.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::canonical;
use super::fields;
use super::{Diagnostic, Job, SourceLocation};
use crate::api::{ContentItem, ContentRole, JOB_SCHEME};
use crate::hex::hex;

/// The shorthand field a content item is written as, for messages.
fn field_of(item: &ContentItem) -> &'static str {
    match (item, item.role()) {
        (ContentItem::DraftTask { .. }, _) => "draft_task",
        (_, Some(ContentRole::FirstFrame)) => "first_frame",
        (_, Some(ContentRole::LastFrame)) => "last_frame",
        (_, Some(ContentRole::ReferenceImage)) => "reference_image",
        (_, Some(ContentRole::ReferenceVideo)) => "reference_video",
        (_, Some(ContentRole::ReferenceAudio)) => "reference_audio",
        _ => "content",
    }
}

/// The ids of the jobs a request refers to, in content order, each once.
pub fn upstream_of(request: &crate::api::CreateRequest) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in request.content.iter().filter_map(ContentItem::job_ref) {
        let t = t.trim();
        if !t.is_empty() && !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    }
    out
}

/// Checks and links the references of `jobs` (see the module doc). `known` says whether an id
/// belongs to a job that was written but left out for errors of its own (no second error is
/// reported for a reference to it). Problems go to `diags`.
pub fn link(jobs: &mut [Job], known: &dyn Fn(&str) -> bool, diags: &mut Vec<Diagnostic>) {
    let index: HashMap<String, usize> = jobs.iter().enumerate().map(|(i, j)| (j.id.clone(), i)).collect();
    let before = diags.iter().filter(|d| d.is_error()).count();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); jobs.len()];
    let mut wants_frame: HashSet<usize> = HashSet::new();
    let mut any = false;
    for (i, j) in jobs.iter().enumerate() {
        for (ci, item) in j.request.content.iter().enumerate() {
            let Some(target) = item.job_ref() else {
                continue;
            };
            any = true;
            let target = target.trim();
            let loc = j
                .content_locs
                .get(ci)
                .cloned()
                .unwrap_or_else(|| j.source.clone());
            let field = field_of(item);
            let shown = format!("`{JOB_SCHEME}{target}`");
            if target == j.id {
                diags.push(Diagnostic::field_error(
                    loc,
                    field,
                    format!("{shown}, a reference of job `{}` to itself", j.id),
                    "the id of another job of the plan",
                ));
                continue;
            }
            let Some(&t) = index.get(target) else {
                if !known(target) {
                    let mut d = Diagnostic::field_error(
                        loc,
                        field,
                        format!("{shown}, which names no job of the plan"),
                        "the id of a job of the plan",
                    );
                    if let Some(s) = fields::suggest(target, index.keys().map(String::as_str)) {
                        d = d.with_help(format!("did you mean `{JOB_SCHEME}{s}`?"));
                    }
                    diags.push(d);
                }
                continue;
            };
            match item {
                ContentItem::DraftTask { .. } if jobs[t].request.draft != Some(true) => {
                    diags.push(
                        Diagnostic::field_error(
                            loc,
                            field,
                            format!("{shown}, which is not a draft job"),
                            "a job with `draft: true`",
                        )
                        .with_help(format!(
                            "set `draft: true` on job `{target}` (at {}), or refer to its video \
                             with reference_video",
                            jobs[t].source
                        )),
                    );
                    continue;
                }
                ContentItem::ImageUrl { .. } => {
                    wants_frame.insert(t);
                }
                _ => {}
            }
            if !edges[i].contains(&t) {
                edges[i].push(t);
            }
        }
    }
    if !any {
        return;
    }
    for (j, e) in jobs.iter_mut().zip(&edges) {
        j.upstream = upstream_of(&j.request);
        // References that failed their checks are not links.
        j.upstream.retain(|u| e.iter().any(|&t| index.get(u) == Some(&t)));
    }
    let Some(order) = topological(&edges, jobs, diags) else {
        return;
    };
    if diags.iter().filter(|d| d.is_error()).count() > before {
        return;
    }
    for t in wants_frame {
        jobs[t].request.return_last_frame = Some(true);
    }
    // Identities, upstream first.
    let mut fps: Vec<Option<String>> = vec![None; jobs.len()];
    for &i in &order {
        let own = canonical::fingerprint(&jobs[i].request);
        if edges[i].is_empty() {
            fps[i] = Some(own);
            continue;
        }
        let mut h = Sha256::new();
        h.update(own.as_bytes());
        for &u in &edges[i] {
            h.update([0]);
            h.update(fps[u].as_deref().unwrap_or_default().as_bytes());
        }
        let fp = hex(&h.finalize());
        jobs[i].chain_fingerprint = Some(fp.clone());
        fps[i] = Some(fp);
    }
    for chain in groups(&edges) {
        if chain.len() < 2 {
            continue;
        }
        let root = chain
            .iter()
            .filter(|&&i| edges[i].is_empty())
            .map(|&i| jobs[i].id.clone())
            .min()
            .or_else(|| chain.iter().map(|&i| jobs[i].id.clone()).min())
            .unwrap_or_default();
        for &i in &chain {
            jobs[i].chain_root = Some(root.clone());
        }
    }
}

/// The jobs in an order where each comes after every job it refers to; `None` (with one error
/// per cycle, naming every job in it) when the references make a cycle.
fn topological(edges: &[Vec<usize>], jobs: &[Job], diags: &mut Vec<Diagnostic>) -> Option<Vec<usize>> {
    let n = edges.len();
    let mut waiting: Vec<usize> = edges.iter().map(Vec::len).collect();
    let mut down: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, e) in edges.iter().enumerate() {
        for &u in e {
            down[u].push(i);
        }
    }
    let mut order: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut k = 0;
    while k < order.len() {
        let u = order[k];
        k += 1;
        for &d in &down[u] {
            waiting[d] -= 1;
            if waiting[d] == 0 {
                order.push(d);
            }
        }
    }
    if order.len() == n {
        return Some(order);
    }
    // Every job left is in a cycle or behind one: walk references among them until one repeats.
    let left: HashSet<usize> = (0..n).filter(|&i| waiting[i] > 0).collect();
    let mut reported: HashSet<BTreeSet<usize>> = HashSet::new();
    let mut starts: Vec<usize> = left.iter().copied().collect();
    starts.sort_unstable();
    for start in starts {
        let mut path: Vec<usize> = vec![start];
        let mut at = start;
        let cycle = loop {
            let Some(&next) = edges[at].iter().find(|u| left.contains(u)) else {
                break None;
            };
            if let Some(pos) = path.iter().position(|&p| p == next) {
                break Some(path[pos..].to_vec());
            }
            path.push(next);
            at = next;
        };
        let Some(mut cycle) = cycle else {
            continue;
        };
        if !reported.insert(cycle.iter().copied().collect()) {
            continue;
        }
        // Told from the job written first, in the direction a reader follows: each job is
        // referred to by the next.
        cycle.reverse();
        let first = (0..cycle.len()).min_by_key(|&p| cycle[p]).unwrap_or(0);
        cycle.rotate_left(first);
        let mut names: Vec<String> = cycle.iter().map(|&i| format!("`{}`", jobs[i].id)).collect();
        names.push(names[0].clone());
        let head = &jobs[cycle[0]];
        let loc: SourceLocation = head.source.clone();
        diags.push(
            Diagnostic::error(
                loc,
                format!(
                    "a cycle of job references: {} (each waits for the one before it, so none \
                     could start)",
                    names.join(" → ")
                ),
            )
            .with_help(format!(
                "the jobs in the cycle: {}",
                cycle
                    .iter()
                    .map(|&i| format!("`{}` at {}", jobs[i].id, jobs[i].source))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        );
    }
    None
}

/// The jobs linked by references, each group in plan order.
fn groups(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for (i, e) in edges.iter().enumerate() {
        for &u in e {
            let (a, b) = (find(&mut parent, i), find(&mut parent, u));
            if a != b {
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    let mut by_root: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..n {
        let r = find(&mut parent, i);
        by_root.entry(r).or_default().push(i);
    }
    let mut out: Vec<Vec<usize>> = by_root.into_values().collect();
    out.sort_by_key(|g| g.first().copied().unwrap_or_default());
    out
}

/// The longest run of references ending at each job of `group` (1 for a job that refers to
/// none), computed upstream first without recursion.
fn depths(edges: &[Vec<usize>], group: &[usize]) -> HashMap<usize, usize> {
    let members: HashSet<usize> = group.iter().copied().collect();
    let mut waiting: HashMap<usize, usize> = group
        .iter()
        .map(|&i| (i, edges[i].iter().filter(|u| members.contains(u)).count()))
        .collect();
    let mut down: HashMap<usize, Vec<usize>> = HashMap::new();
    for &i in group {
        for &u in edges[i].iter().filter(|u| members.contains(u)) {
            down.entry(u).or_default().push(i);
        }
    }
    let mut depth: HashMap<usize, usize> = HashMap::new();
    let mut ready: Vec<usize> = group
        .iter()
        .copied()
        .filter(|i| waiting.get(i) == Some(&0))
        .collect();
    while let Some(u) = ready.pop() {
        let d = 1 + edges[u]
            .iter()
            .filter_map(|x| depth.get(x))
            .max()
            .copied()
            .unwrap_or(0);
        depth.insert(u, d);
        for &x in down.get(&u).map(Vec::as_slice).unwrap_or_default() {
            if let Some(w) = waiting.get_mut(&x) {
                *w = w.saturating_sub(1);
                if *w == 0 {
                    ready.push(x);
                }
            }
        }
    }
    depth
}

/// One chain of a plan: jobs linked by references, for `plan`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chain {
    /// The chain's root (the id that places it in a shard).
    pub root: String,
    /// Every job of the chain, in plan order.
    pub jobs: Vec<String>,
    /// The longest run of jobs that must go one after another.
    pub length: usize,
    /// Estimated tokens of the whole chain, when every estimate is known.
    pub estimated_tokens: Option<u64>,
    /// The chain as a tree: each line one job, indented under the job it refers to first.
    pub tree: Vec<String>,
}

/// The chains of a plan's jobs (groups of two or more jobs linked by `job://` references).
pub fn chains(jobs: &[Job]) -> Vec<Chain> {
    let index: HashMap<&str, usize> = jobs.iter().enumerate().map(|(i, j)| (j.id.as_str(), i)).collect();
    let edges: Vec<Vec<usize>> = jobs
        .iter()
        .map(|j| {
            j.upstream
                .iter()
                .filter_map(|u| index.get(u.as_str()).copied())
                .collect()
        })
        .collect();
    let mut out = Vec::new();
    for group in groups(&edges) {
        if group.len() < 2 {
            continue;
        }
        // Depth of each job: the longest run of references ending at it.
        let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
        for &i in &group {
            if let Some(&first) = edges[i].first() {
                children.entry(first).or_default().push(i);
            }
        }
        let depth = depths(&edges, &group);
        let length = depth.values().copied().max().unwrap_or(1);
        let mut tree = Vec::new();
        let mut stack: Vec<(usize, usize)> = group
            .iter()
            .filter(|&&i| edges[i].is_empty())
            .rev()
            .map(|&i| (i, 0))
            .collect();
        let mut shown: HashSet<usize> = HashSet::new();
        while let Some((i, level)) = stack.pop() {
            if !shown.insert(i) {
                continue;
            }
            let j = &jobs[i];
            let also: Vec<&str> = j.upstream.iter().skip(1).map(String::as_str).collect();
            let tokens = j
                .estimated_tokens
                .map(|t| format!(", ~{t} tokens"))
                .unwrap_or_default();
            let extra = if also.is_empty() {
                String::new()
            } else {
                format!(" (also after {})", also.join(", "))
            };
            let lead = if level == 0 {
                String::new()
            } else {
                format!("{}└─ ", "   ".repeat(level - 1))
            };
            tree.push(format!("{lead}{}{extra}{tokens}", j.id));
            if let Some(c) = children.get(&i) {
                for &d in c.iter().rev() {
                    stack.push((d, level + 1));
                }
            }
        }
        let estimated_tokens = group.iter().try_fold(0u64, |acc, &i| {
            jobs[i].estimated_tokens.map(|t| acc.saturating_add(t))
        });
        let root = jobs[group[0]]
            .chain_root
            .clone()
            .unwrap_or_else(|| jobs[group[0]].id.clone());
        out.push(Chain {
            root,
            jobs: group.iter().map(|&i| jobs[i].id.clone()).collect(),
            length,
            estimated_tokens,
            tree,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::api::{CreateRequest, DraftTaskRef, MediaUrl};

    fn job(id: &str, prompt: &str, first_frame: Option<&str>) -> Job {
        let mut request = CreateRequest {
            model: "seedance-1.5-pro".into(),
            prompt: prompt.into(),
            ..Default::default()
        };
        if let Some(f) = first_frame {
            request.content.push(ContentItem::ImageUrl {
                image_url: MediaUrl { url: f.into() },
                role: Some(ContentRole::FirstFrame),
            });
        }
        Job {
            id: id.into(),
            name: id.into(),
            request,
            source: SourceLocation::File {
                file: Arc::from("m.yaml"),
            },
            estimated_tokens: Some(10),
            upstream: Vec::new(),
            content_locs: Vec::new(),
            chain_fingerprint: None,
            chain_root: None,
        }
    }

    fn linked(mut jobs: Vec<Job>) -> (Vec<Job>, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        link(&mut jobs, &|_| false, &mut diags);
        (jobs, diags)
    }

    fn story(first_prompt: &str) -> Vec<Job> {
        vec![
            job("s1", first_prompt, None),
            job("s2", "two", Some("job://s1")),
            job("s3", "three", Some("job://s2")),
            job("other", "alone", None),
        ]
    }

    #[test]
    fn editing_the_first_shot_changes_the_identity_of_every_shot_after_it() {
        let (a, d) = linked(story("one"));
        assert!(d.is_empty(), "{d:?}");
        let (b, _) = linked(story("one, edited"));
        for i in 0..3 {
            assert_ne!(a[i].fingerprint(), b[i].fingerprint(), "{}", a[i].id);
        }
        assert_eq!(a[3].fingerprint(), b[3].fingerprint());
        assert_eq!(a[2].upstream, ["s2"]);
        assert_eq!(a[0].request.return_last_frame, Some(true));
        assert_eq!(a[2].request.return_last_frame, None);
    }

    #[test]
    fn a_chain_is_sharded_by_its_root() {
        let (jobs, _) = linked(story("one"));
        for j in &jobs[..3] {
            assert_eq!(j.shard_key(), "s1");
        }
        assert_eq!(jobs[3].shard_key(), "other");
        let chains = chains(&jobs);
        assert_eq!(chains.len(), 1);
        assert_eq!(chains[0].length, 3);
        assert_eq!(chains[0].estimated_tokens, Some(30));
        assert_eq!(
            chains[0].tree,
            ["s1, ~10 tokens", "└─ s2, ~10 tokens", "   └─ s3, ~10 tokens"]
        );
    }

    #[test]
    fn a_draft_task_must_name_a_draft_job() {
        let mut jobs = vec![job("d", "draft", None), job("f", "final", None)];
        jobs[1].request.content.push(ContentItem::DraftTask {
            draft_task: DraftTaskRef { id: "job://d".into() },
            role: None,
        });
        let (_, d) = linked(jobs.clone());
        assert_eq!(d.len(), 1);
        assert!(d[0].to_string().contains("not a draft"), "{}", d[0]);
        jobs[0].request.draft = Some(true);
        let (jobs, d) = linked(jobs);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(jobs[1].upstream, ["d"]);
        // A draft's last frame is not asked for when only its task is used.
        assert_eq!(jobs[0].request.return_last_frame, None);
    }

    #[test]
    fn every_cycle_is_reported_once_with_all_its_jobs() {
        let jobs = vec![
            job("a", "a", Some("job://c")),
            job("b", "b", Some("job://a")),
            job("c", "c", Some("job://b")),
            job("behind", "d", Some("job://c")),
            job("x", "x", Some("job://y")),
            job("y", "y", Some("job://x")),
        ];
        let (_, d) = linked(jobs);
        let text: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert_eq!(d.len(), 2, "{text:?}");
        assert!(text[0].contains("`a` → `b` → `c` → `a`"), "{}", text[0]);
        assert!(text[1].contains("`x` → `y` → `x`"), "{}", text[1]);
    }

    #[test]
    fn odd_references_never_panic() {
        for r in ["job://", "job:// ", "job://\u{0}", "job://a/b", "job://ü"] {
            let (_, d) = linked(vec![job("a", "a", None), job("b", "b", Some(r))]);
            assert!(!d.is_empty() || r == "job://a/b", "{r}");
        }
    }
}
