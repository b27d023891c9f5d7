//! Genome layout, decoding and kernel counting (design §6.3, invariant 11).

use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use splitter_ga::{
    array_split_sizes, group_count, rescnn_gene_layers, simcnn_gene_layers, GaError, GeneLayer,
    Genome,
};

#[test]
fn array_split_matches_numpy_examples() {
    assert_eq!(
        array_split_sizes(64, 10),
        vec![7, 7, 7, 7, 6, 6, 6, 6, 6, 6]
    );
    let sizes = array_split_sizes(512, 100);
    assert_eq!(sizes.len(), 100);
    assert!(sizes[..12].iter().all(|&s| s == 6));
    assert!(sizes[12..].iter().all(|&s| s == 5));
    assert_eq!(sizes.iter().sum::<usize>(), 512);
    assert_eq!(array_split_sizes(10, 10), vec![1; 10]);
    assert_eq!(array_split_sizes(3, 0), Vec::<usize>::new());
}

#[test]
fn group_count_follows_width_rule() {
    assert_eq!(group_count(64), 10);
    assert_eq!(group_count(255), 10);
    assert_eq!(group_count(256), 100);
    assert_eq!(group_count(512), 100);
    assert_eq!(group_count(64 / 8), 8);
    assert_eq!(group_count(128), 10);
    assert_eq!(group_count(1), 1);
}

#[test]
fn simcnn_has_940_genes() {
    let genome = Genome::new(simcnn_gene_layers(1.0)).unwrap();
    assert_eq!(genome.gene_count(), 940);
    assert_eq!(genome.conv_count(), 13);
    assert_eq!(genome.kernel_total(), 4224);
}

#[test]
fn rescnn_has_630_genes_and_shares_coupled_convs() {
    let genome = Genome::new(rescnn_gene_layers(1.0)).unwrap();
    assert_eq!(genome.gene_count(), 630);
    assert_eq!(genome.conv_count(), 12);
    assert_eq!(genome.kernel_total(), 4288);
    let all = genome.all_ones();
    // Coupled convs 1&3, 5&7, 9&11 count once each.
    assert_eq!(genome.kept_kernel_count(&all).unwrap(), 4288);
    let orders = genome.identity_orders();
    let per_conv = genome
        .retained_per_conv(&genome.decode(&all, &orders).unwrap())
        .unwrap();
    for (a, b) in [(1, 3), (5, 7), (9, 11)] {
        assert_eq!(per_conv[a], per_conv[b]);
    }
}

#[test]
fn narrow_widths_scale_group_counts() {
    let genome = Genome::new(simcnn_gene_layers(0.25)).unwrap();
    // 16,16,32,32,64,64,64,128×6 → all below 256 → 10 groups each.
    assert_eq!(genome.gene_count(), 130);
    assert_eq!(genome.kernel_total(), 1056);
    let genome = Genome::new(rescnn_gene_layers(0.125)).unwrap();
    // 8 (→8 groups), 16, 16, 32, 64×5 → 8 + 8·10.
    assert_eq!(genome.gene_count(), 88);
}

#[test]
fn decode_maps_groups_through_importance_order() {
    let genome = Genome::new(vec![GeneLayer {
        convs: vec![0],
        channels: 5,
        groups: 3,
    }])
    .unwrap();
    // array_split(5, 3) = 2, 2, 1; importance order: kernel 4 most important, then 2, 0, 3, 1.
    let orders = vec![vec![4, 2, 0, 3, 1]];
    assert_eq!(
        genome.decode(&[1, 0, 0], &orders).unwrap(),
        vec![vec![2, 4]]
    );
    assert_eq!(
        genome.decode(&[0, 1, 1], &orders).unwrap(),
        vec![vec![0, 1, 3]]
    );
    assert_eq!(genome.kept_kernel_count(&[0, 1, 1]).unwrap(), 3);
    assert_eq!(
        genome.decode(&[0, 0, 0], &orders).unwrap(),
        vec![Vec::<usize>::new()]
    );
}

#[test]
fn identifier_sets_number_kernels_conv_after_conv() {
    let genome = Genome::new(vec![
        GeneLayer::new(vec![0], 4),
        GeneLayer::new(vec![1, 2], 3),
    ])
    .unwrap();
    assert_eq!(genome.identifier(0, 3), 3);
    assert_eq!(genome.identifier(1, 0), 4);
    assert_eq!(genome.identifier(2, 2), 9);
    let ids = genome.identifier_set(&[vec![1, 3], vec![0, 2]]).unwrap();
    assert_eq!(ids, vec![1, 3, 4, 6, 7, 9]);
}

#[test]
fn invalid_inputs_are_rejected_with_clear_errors() {
    let genome = Genome::new(vec![GeneLayer::new(vec![0], 4)]).unwrap();
    assert!(matches!(
        genome.decode(&[1, 0], &genome.identity_orders()),
        Err(GaError::ChromosomeLength {
            expected: 4,
            found: 2
        })
    ));
    assert!(matches!(
        genome.kept_kernel_count(&[1, 2, 0, 0]),
        Err(GaError::GeneValue {
            position: 1,
            value: 2
        })
    ));
    let err = genome
        .decode(&[1, 1, 1, 1], &[vec![0, 1, 1, 3]])
        .unwrap_err();
    assert!(err.to_string().contains("listed twice"), "{err}");
    let err =
        Genome::new(vec![GeneLayer::new(vec![0], 4), GeneLayer::new(vec![2], 4)]).unwrap_err();
    assert!(
        err.to_string().contains("conv 1 is in no gene-layer"),
        "{err}"
    );
    let err =
        Genome::new(vec![GeneLayer::new(vec![0], 4), GeneLayer::new(vec![0], 4)]).unwrap_err();
    assert!(err.to_string().contains("more than one place"), "{err}");
    assert!(Genome::new(vec![GeneLayer::new(vec![0], 0)]).is_err());
}

fn random_orders(genome: &Genome, rng: &mut ChaCha8Rng) -> Vec<Vec<usize>> {
    genome
        .layers()
        .iter()
        .map(|l| {
            let mut order: Vec<usize> = (0..l.channels).collect();
            order.shuffle(rng);
            order
        })
        .collect()
}

#[test]
fn all_ones_decodes_to_every_kernel() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for genome in [
        Genome::new(simcnn_gene_layers(1.0)).unwrap(),
        Genome::new(rescnn_gene_layers(1.0)).unwrap(),
    ] {
        let orders = random_orders(&genome, &mut rng);
        let decoded = genome.decode(&genome.all_ones(), &orders).unwrap();
        for (set, layer) in decoded.iter().zip(genome.layers()) {
            assert_eq!(*set, (0..layer.channels).collect::<Vec<_>>());
        }
        let ids = genome.identifier_set(&decoded).unwrap();
        assert_eq!(ids, (0..genome.kernel_total() as u32).collect::<Vec<_>>());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn kept_count_is_sum_of_kept_group_sizes(seed in any::<u64>(), rescnn in any::<bool>()) {
        let layers = if rescnn { rescnn_gene_layers(1.0) } else { simcnn_gene_layers(1.0) };
        let genome = Genome::new(layers).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let chromosome: Vec<u8> =
            (0..genome.gene_count()).map(|_| u8::from(rand::Rng::random_bool(&mut rng, 0.5))).collect();
        let orders = random_orders(&genome, &mut rng);
        let mut expected = 0;
        for (l, layer) in genome.layers().iter().enumerate() {
            let genes = &chromosome[genome.gene_range(l)];
            let kept: usize = genes
                .iter()
                .zip(genome.group_sizes(l))
                .filter(|(&g, _)| g == 1)
                .map(|(_, &s)| s)
                .sum();
            expected += kept * layer.convs.len();
        }
        prop_assert_eq!(genome.kept_kernel_count(&chromosome).unwrap(), expected);
        let decoded = genome.decode(&chromosome, &orders).unwrap();
        let per_layer: usize = decoded
            .iter()
            .zip(genome.layers())
            .map(|(s, l)| s.len() * l.convs.len())
            .sum();
        prop_assert_eq!(per_layer, expected);
        let ids = genome.identifier_set(&decoded).unwrap();
        prop_assert_eq!(ids.len(), expected);
        prop_assert!(ids.windows(2).all(|w| w[0] < w[1]));
        for set in &decoded {
            prop_assert!(set.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
