//! `nightjar blocklist` and `nightjar xdp`: talk to a running agent's control socket.

use anyhow::Result;
use serde_json::{json, Value};

use crate::cli::{BlocklistAction, BlocklistArgs, PodsArgs, XdpAction, XdpArgs};
use crate::control::{encode_query, request};

/// The agent's error message, or the whole body when it has none.
fn refusal(status: u16, body: &Value) -> anyhow::Error {
    let message = body["error"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string());
    anyhow::anyhow!("the agent refused ({status}): {message}")
}

/// GETs `target` and returns the JSON answer; the agent's refusal as an error.
fn get(socket: &std::path::Path, target: &str) -> Result<Value> {
    let (status, body) = request(socket, "GET", target, None)?;
    if status != 200 {
        return Err(refusal(status, &body));
    }
    Ok(body)
}

pub fn run(args: &BlocklistArgs) -> Result<()> {
    match &args.action {
        BlocklistAction::List { json } => {
            let body = get(&args.socket, "/v1/blocklist")?;
            if *json {
                println!("{body}");
                return Ok(());
            }
            println!(
                "{:<44} {:<6} {:>12} {:>14}",
                "CIDR", "MODE", "PACKETS", "BYTES"
            );
            for entry in body.as_array().into_iter().flatten() {
                println!(
                    "{:<44} {:<6} {:>12} {:>14}",
                    entry["cidr"].as_str().unwrap_or("?"),
                    entry["mode"].as_str().unwrap_or("?"),
                    entry["packets"],
                    entry["bytes"]
                );
            }
        }
        BlocklistAction::Add { cidr, audit } => {
            let mode = if *audit { "audit" } else { "drop" };
            let body = json!({ "cidr": cidr, "mode": mode });
            let (status, reply) = request(&args.socket, "POST", "/v1/blocklist", Some(&body))?;
            if status != 201 {
                return Err(refusal(status, &reply));
            }
            println!("added {} ({mode})", reply["cidr"].as_str().unwrap_or(cidr));
        }
        BlocklistAction::Remove { cidr } => {
            let target = format!("/v1/blocklist?cidr={}", encode_query(cidr));
            let (status, reply) = request(&args.socket, "DELETE", &target, None)?;
            if status != 200 {
                return Err(refusal(status, &reply));
            }
            println!("removed {}", reply["removed"].as_str().unwrap_or(cidr));
        }
    }
    Ok(())
}

pub fn run_xdp(args: &XdpArgs) -> Result<()> {
    match &args.action {
        XdpAction::Sources { limit, json } => {
            let body = get(&args.socket, &format!("/v1/xdp/sources?limit={limit}"))?;
            if *json {
                println!("{body}");
                return Ok(());
            }
            println!(
                "{:<16} {:<44} {:>12} {:>14}",
                "INTERFACE", "SOURCE", "PACKETS", "BYTES"
            );
            for s in body.as_array().into_iter().flatten() {
                println!(
                    "{:<16} {:<44} {:>12} {:>14}",
                    s["interface"].as_str().unwrap_or("?"),
                    s["source"].as_str().unwrap_or("?"),
                    s["packets"],
                    s["bytes"]
                );
            }
        }
    }
    Ok(())
}

pub fn run_pods(args: &PodsArgs) -> Result<()> {
    let body = get(&args.socket, "/v1/kubernetes/pods")?;
    if args.json {
        println!("{body}");
        return Ok(());
    }
    println!(
        "{:<20} {:<36} {:<32} {:<24} {:>6} {:<8}",
        "NAMESPACE", "POD", "WORKLOAD", "SERVICE", "SCORE", "LEVEL"
    );
    for pod in body.as_array().into_iter().flatten() {
        let workload = format!(
            "{}/{}",
            pod["workload"]["kind"].as_str().unwrap_or("?"),
            pod["workload"]["name"].as_str().unwrap_or("?")
        );
        let services = pod["services"].as_array().cloned().unwrap_or_default();
        let rows = if services.is_empty() {
            vec![Value::Null]
        } else {
            services
        };
        for service in rows {
            println!(
                "{:<20} {:<36} {:<32} {:<24} {:>6} {:<8}",
                pod["namespace"].as_str().unwrap_or("?"),
                pod["pod"].as_str().unwrap_or("?"),
                workload,
                service["name"].as_str().unwrap_or("-"),
                service["importance"]["score"]
                    .as_f64()
                    .map_or("-".to_string(), |s| format!("{s:.3}")),
                service["importance"]["level"].as_str().unwrap_or("-")
            );
        }
    }
    Ok(())
}
