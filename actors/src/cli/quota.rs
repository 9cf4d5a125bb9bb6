//! zkCli 3.8's quota commands: `setquota`, `listquota`, `delquota`. As in zkCli
//! they run client-side, writing `/zookeeper/quota/<path>/zookeeper_limits`
//! and `.../zookeeper_stats`; the server keeps the stats current.

use zookeeper_client as zk;

use warden_core::quota::{self, StatsTrack, LIMIT_NODE};
use warden_core::tree::QUOTA;

use super::commands::{check_path, err, parse, usage_of, zk_error, CmdResult, Failure, Parsed};

/// commons-cli's OptionGroup: at most one of -n -b -N -B (in command-line order).
fn one_of_group(p: &Parsed, tokens: &[String]) -> CmdResult {
    let chosen: Vec<char> =
        tokens.iter().filter_map(|t| t.strip_prefix('-')).filter_map(|t| t.chars().next()).filter(|c| "nbNB".contains(*c) && p.has(*c)).collect();
    if chosen.len() > 1 {
        return err(format!(
            "org.apache.commons.cli.AlreadySelectedException: The option '{}' was specified but an option from this group has already been selected: '{}'",
            chosen[1], chosen[0]
        ));
    }
    Ok(())
}

fn read_track(data: &[u8], path: &str) -> Result<StatsTrack, Failure> {
    StatsTrack::parse(data).map_err(|e| Failure::Error(format!("{path}: {e}")))
}

async fn create_if_missing(client: &zk::Client, path: &str, data: &[u8]) -> CmdResult {
    if client.check_stat(path).await.map_err(|e| zk_error(e, path))?.is_some() {
        return Ok(());
    }
    let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    match client.create(path, data, &options).await {
        Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
        Err(e) => Err(zk_error(e, path)),
    }
}

pub async fn setquota(client: &zk::Client, args: &[String]) -> CmdResult {
    let p = parse(args, "", "nbNB")?;
    one_of_group(&p, args)?;
    if !["n", "b", "N", "B"].iter().any(|c| p.has(c.chars().next().unwrap())) {
        return err(
            "org.apache.commons.cli.MissingOptionException: Missing required option: [-n num soft quota, -b bytes soft quota, -N num hard quota, -B bytes hard quota]",
        );
    }
    // zkCli counts the command name among its args, so a path is args[1] and may follow other words.
    if p.args.is_empty() {
        return err(usage_of("setquota"));
    }
    let path = &p.args[0];
    if path.starts_with(QUOTA) {
        eprintln!("cannot set a quota under the path: {QUOTA}");
        return Ok(());
    }
    let mut limits = StatsTrack::unlimited();
    let parsed = (|| -> Result<Result<(), &'static str>, ()> {
        let num = |c| p.opts.get(&c).map(|v: &String| v.parse::<i32>().map(i64::from).map_err(|_| ())).transpose();
        let bytes = |c| p.opts.get(&c).map(|v: &String| v.parse::<i64>().map_err(|_| ())).transpose();
        if let Some(n) = num('n')? {
            if n <= 0 {
                return Ok(Err("the num quota must be greater than zero"));
            }
            limits.set_count(n);
        }
        if let Some(b) = bytes('b')? {
            if b < 0 {
                return Ok(Err("the bytes quota must be greater than or equal to zero"));
            }
            limits.set_bytes(b);
        }
        if let Some(n) = num('N')? {
            if n <= 0 {
                return Ok(Err("the num quota must be greater than zero"));
            }
            limits.set_count_hard_limit(n);
        }
        if let Some(b) = bytes('B')? {
            if b < 0 {
                return Ok(Err("the bytes quota must be greater than or equal to zero"));
            }
            limits.set_byte_hard_limit(b);
        }
        Ok(Ok(()))
    })();
    // zkCli prints these and exits 0.
    match parsed {
        Err(()) => {
            eprintln!("NumberFormatException happens when parsing the option value");
            return Ok(());
        }
        Ok(Err(msg)) => {
            eprintln!("{msg}");
            return Ok(());
        }
        Ok(Ok(())) => {}
    }
    check_path(path, false)?;
    create_quota(client, path, &limits).await
}

/// SetQuotaCommand.createQuota: refuse nested quotas, create the quota
/// path's nodes, then the limits and stats nodes, or merge into existing limits.
async fn create_quota(client: &zk::Client, path: &str, quota: &StatsTrack) -> CmdResult {
    if client.check_stat(path).await.map_err(|e| zk_error(e, path))?.is_none() {
        return err(format!("{path} does not exist."));
    }
    check_no_child_quota(client, path).await?;
    check_no_parent_quota(client, path).await?;
    create_if_missing(client, "/zookeeper", &[]).await?;
    create_if_missing(client, QUOTA, &[]).await?;
    let mut node = QUOTA.to_string();
    for part in path.split('/').skip(1) {
        node.push('/');
        node.push_str(part);
        create_if_missing(client, &node, &[]).await?;
    }
    let (limit_path, stat_path) = (quota::limit_path(path), quota::stat_path(path));
    let get = |p: String| async move {
        let (data, _) = client.get_data(&p).await.map_err(|e| zk_error(e, &p))?;
        read_track(&data, &p)
    };
    if client.check_stat(&limit_path).await.map_err(|e| zk_error(e, &limit_path))?.is_none() {
        let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        client.create(&limit_path, &quota.to_bytes(), &options).await.map_err(|e| zk_error(e, &limit_path))?;
        client.create(&stat_path, &StatsTrack::usage(0, 0).to_bytes(), &options).await.map_err(|e| zk_error(e, &stat_path))?;
        let (limits, usage) = (get(limit_path).await?, get(stat_path).await?);
        warn_below_usage(&limits, &usage);
    } else {
        let mut limits = get(limit_path.clone()).await?;
        if quota.count() > -1 {
            limits.set_count(quota.count());
        }
        if quota.bytes() > -1 {
            limits.set_bytes(quota.bytes());
        }
        if quota.count_hard_limit() > -1 {
            limits.set_count_hard_limit(quota.count_hard_limit());
        }
        if quota.byte_hard_limit() > -1 {
            limits.set_byte_hard_limit(quota.byte_hard_limit());
        }
        let usage = get(stat_path).await?;
        warn_below_usage(&limits, &usage);
        client.set_data(&limit_path, &limits.to_bytes(), None).await.map_err(|e| zk_error(e, &limit_path))?;
    }
    Ok(())
}

fn warn_below_usage(limits: &StatsTrack, usage: &StatsTrack) {
    let below = |soft: i64, hard: i64, used: i64| (soft > -1 && soft < used) || (hard > -1 && hard < used);
    if below(limits.count(), limits.count_hard_limit(), usage.count()) {
        println!("[Warning]: the count quota you create is less than the existing count:{}", usage.count());
    }
    if below(limits.bytes(), limits.byte_hard_limit(), usage.bytes()) {
        println!("[Warning]: the bytes quota you create is less than the existing bytes:{}", usage.bytes());
    }
}

/// No quota may sit below `path` (any limits node in the quota subtree other than its own).
async fn check_no_child_quota(client: &zk::Client, path: &str) -> CmdResult {
    let own = quota::quota_path(path);
    let mut stack = vec![own.clone()];
    while let Some(node) = stack.pop() {
        let children = match client.list_children(&node).await {
            Ok(c) => c,
            Err(zk::Error::NoNode) => continue,
            Err(e) => return Err(zk_error(e, &node)),
        };
        if node != own && children.iter().any(|c| c == LIMIT_NODE) {
            return err(format!("{path} has a child {} which has a quota", &node[QUOTA.len()..]));
        }
        stack.extend(children.iter().map(|c| format!("{node}/{c}")));
    }
    Ok(())
}

/// No quota may sit on an ancestor of `path`.
async fn check_no_parent_quota(client: &zk::Client, path: &str) -> CmdResult {
    let parts: Vec<&str> = path.split('/').collect();
    let mut node = QUOTA.to_string();
    for part in parts.iter().take(parts.len().saturating_sub(1)).skip(1) {
        node.push('/');
        node.push_str(part);
        let children = match client.list_children(&node).await {
            Ok(c) => c,
            Err(zk::Error::NoNode) => return Ok(()),
            Err(e) => return Err(zk_error(e, &node)),
        };
        if children.iter().any(|c| c == LIMIT_NODE) {
            return err(format!("{path} has a parent {} which has a quota", &node[QUOTA.len()..]));
        }
    }
    Ok(())
}

pub async fn listquota(client: &zk::Client, args: &[String]) -> CmdResult {
    let p = parse(args, "", "")?;
    let Some(path) = p.args.first() else {
        return err(usage_of("listquota"));
    };
    let limit_path = quota::limit_path(path);
    eprintln!("absolute path is {limit_path}");
    let mut tracks = Vec::new();
    for node in [limit_path, quota::stat_path(path)] {
        match client.get_data(&node).await {
            Ok((data, _)) => tracks.push(read_track(&data, &node)?),
            Err(zk::Error::NoNode) => {
                eprintln!("quota for {path} does not exist.");
                return Ok(());
            }
            Err(e) => return Err(zk_error(e, &node)),
        }
    }
    println!("Output quota for {path} {}", tracks[0]);
    println!("Output stat for {path} {}", tracks[1]);
    Ok(())
}

pub async fn delquota(client: &zk::Client, args: &[String]) -> CmdResult {
    let p = parse(args, "nbNB", "")?;
    one_of_group(&p, args)?;
    let Some(path) = p.args.first() else {
        return err(usage_of("delquota"));
    };
    let (parent, limit_path) = (quota::quota_path(path), quota::limit_path(path));
    if client.check_stat(&limit_path).await.map_err(|e| zk_error(e, &limit_path))?.is_none() {
        println!("Quota does not exist for {path}");
        return Ok(());
    }
    let data = match client.get_data(&limit_path).await {
        Ok((data, _)) => data,
        Err(zk::Error::NoNode) => {
            eprintln!("quota for {path} does not exist.");
            return Ok(());
        }
        Err(e) => return Err(zk_error(e, &limit_path)),
    };
    let mut limits = read_track(&data, &limit_path)?;
    if !(p.has('n') || p.has('b') || p.has('N') || p.has('B')) {
        // Everything: the quota node's children, then empty ancestors up to /zookeeper/quota.
        for child in client.list_children(&parent).await.map_err(|e| zk_error(e, &parent))? {
            let node = format!("{parent}/{child}");
            client.delete(&node, None).await.map_err(|e| zk_error(e, &node))?;
        }
        let mut node = parent;
        while node != QUOTA {
            if !client.list_children(&node).await.map_err(|e| zk_error(e, &node))?.is_empty() {
                break;
            }
            client.delete(&node, None).await.map_err(|e| zk_error(e, &node))?;
            node.truncate(node.rfind('/').unwrap_or(0));
        }
        return Ok(());
    }
    if p.has('n') {
        limits.set_count(-1);
    }
    if p.has('b') {
        limits.set_bytes(-1);
    }
    if p.has('N') {
        limits.set_count_hard_limit(-1);
    }
    if p.has('B') {
        limits.set_byte_hard_limit(-1);
    }
    client.set_data(&limit_path, &limits.to_bytes(), None).await.map_err(|e| zk_error(e, &limit_path))?;
    Ok(())
}
