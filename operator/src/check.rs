//! `riskpipe-operator check`: the chart's `helm test`. Passes once an operator
//! replica holds a live leader Lease and the RiskPipeline API is served.

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::{api::coordination::v1::Lease, jiff::Timestamp};
use kube::{Api, Client, api::ListParams};
use riskpipe_crds::RiskPipeline;

/// Options of `check`.
#[derive(Clone, Debug, clap::Args)]
pub struct CheckOptions {
    /// Name of the leader Lease.
    #[arg(long, default_value = "riskpipe-operator")]
    pub lease_name: String,
    /// Namespace of the Lease (the operator's).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout_seconds: u64,
}

/// Whether `lease` has a holder whose last renewal is within its duration at `now`.
pub fn lease_is_live(lease: &Lease, now: Timestamp) -> Result<String, String> {
    let spec = lease.spec.as_ref().ok_or("the Lease has no spec yet")?;
    let holder = spec
        .holder_identity
        .clone()
        .filter(|h| !h.is_empty())
        .ok_or("no replica holds the Lease")?;
    let renewed = spec
        .renew_time
        .as_ref()
        .ok_or("the Lease was never renewed")?;
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let age = now.as_second() - renewed.0.as_second();
    if age > duration {
        return Err(format!(
            "holder {holder} last renewed {age}s ago, longer than the {duration}s lease"
        ));
    }
    Ok(holder)
}

/// Waits until the Lease is live and the API answers, or fails after the timeout.
pub async fn check(opts: CheckOptions) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("cannot build a Kubernetes client")?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &opts.namespace);
    let pipelines: Api<RiskPipeline> = Api::namespaced(client, &opts.namespace);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(opts.timeout_seconds);
    loop {
        let verdict = match leases.get_opt(&opts.lease_name).await {
            Ok(Some(lease)) => lease_is_live(&lease, Timestamp::now()),
            Ok(None) => Err(format!(
                "Lease {}/{} does not exist yet",
                opts.namespace, opts.lease_name
            )),
            Err(e) => Err(format!("cannot read the Lease: {e}")),
        };
        match verdict {
            Ok(holder) => {
                pipelines
                    .list(&ListParams::default().limit(1))
                    .await
                    .context("the RiskPipeline API is not served (is the CRD installed?)")?;
                println!("ok: {holder} leads; RiskPipeline API served");
                return Ok(());
            }
            Err(why) if tokio::time::Instant::now() >= deadline => {
                anyhow::bail!("no live operator after {}s: {why}", opts.timeout_seconds);
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::coordination::v1::LeaseSpec, apimachinery::pkg::apis::meta::v1::MicroTime,
    };

    use super::*;

    fn lease(holder: Option<&str>, renewed: i64) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(Into::into),
                renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
                lease_duration_seconds: Some(15),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn live_only_with_a_holder_renewed_within_the_duration() {
        let now = Timestamp::from_second(1000).unwrap();
        assert_eq!(
            lease_is_live(&lease(Some("op-0"), 990), now),
            Ok("op-0".into())
        );
        assert!(
            lease_is_live(&lease(Some("op-0"), 980), now)
                .unwrap_err()
                .contains("20s ago")
        );
        assert!(lease_is_live(&lease(None, 999), now).is_err());
        assert!(lease_is_live(&Lease::default(), now).is_err());
    }
}
