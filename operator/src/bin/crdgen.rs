//! `crdgen`: prints the `Cell` CustomResourceDefinition (YAML) for `kubectl apply -f -` or the
//! operator's Helm chart.

fn main() -> anyhow::Result<()> {
    print!("{}", cell_operator::crd_yaml()?);
    Ok(())
}
