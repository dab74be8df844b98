//! A realistic demo catalogue (a delicatessen and kitchen shop, a few hundred products),
//! generated deterministically so every run of the local platform shows the same shop.
//! Loaded through the same repository functions as the API, so each product also emits its
//! `product-changed` event.

use crate::AppState;
use crate::domain::{NewCategory, NewProduct};
use crate::repo::{self, RepoError};

struct Family {
    slug: &'static str,
    name: &'static str,
    sku: &'static str,
    /// Item name and base price in cents.
    items: &'static [(&'static str, i64)],
    /// Variant label and price multiplier in percent.
    variants: &'static [(&'static str, i64)],
    blurb: &'static str,
}

const FAMILIES: &[Family] = &[
    Family {
        slug: "coffee",
        name: "Coffee",
        sku: "COF",
        items: &[
            ("Ethiopia Yirgacheffe", 1290),
            ("Colombia Huila", 1090),
            ("Brazil Cerrado", 890),
            ("Guatemala Antigua", 1150),
            ("Kenya Nyeri", 1390),
            ("Sumatra Mandheling", 1190),
            ("Peru Cajamarca", 990),
            ("Rwanda Nyamasheke", 1250),
            ("Costa Rica Tarrazú", 1210),
            ("Honduras Marcala", 950),
        ],
        variants: &[
            ("whole beans, 250 g", 100),
            ("whole beans, 1 kg", 340),
            ("ground, 250 g", 100),
            ("espresso roast, 1 kg", 350),
        ],
        blurb: "Single-origin speciality coffee, roasted in small batches each week.",
    },
    Family {
        slug: "tea",
        name: "Tea",
        sku: "TEA",
        items: &[
            ("Darjeeling First Flush", 1490),
            ("Assam Breakfast", 690),
            ("Earl Grey", 750),
            ("Sencha", 990),
            ("Genmaicha", 850),
            ("Jasmine Pearls", 1590),
            ("Rooibos Vanilla", 650),
            ("Chamomile", 590),
            ("Lapsang Souchong", 890),
            ("Oolong Tie Guan Yin", 1390),
            ("Matcha Ceremonial", 2490),
            ("Peppermint", 550),
        ],
        variants: &[
            ("loose leaf, 100 g", 100),
            ("loose leaf, 250 g", 220),
            ("20 sachets", 90),
        ],
        blurb: "Whole-leaf tea from growers we know by name.",
    },
    Family {
        slug: "chocolate",
        name: "Chocolate",
        sku: "CHO",
        items: &[
            ("Dark 70% Madagascar", 490),
            ("Dark 85% Ecuador", 520),
            ("Milk 40% Ghana", 450),
            ("Hazelnut praline", 550),
            ("Salted caramel", 530),
            ("Orange zest dark", 510),
            ("White vanilla", 460),
            ("Raspberry dark", 540),
        ],
        variants: &[("bar, 100 g", 100), ("box of 6 bars", 560)],
        blurb: "Bean-to-bar chocolate, stone-ground and conched for 72 hours.",
    },
    Family {
        slug: "pantry",
        name: "Pantry",
        sku: "PAN",
        items: &[
            ("Extra virgin olive oil, Andalusia", 1290),
            ("Balsamic vinegar of Modena", 1590),
            ("Dijon mustard", 390),
            ("Whole-grain mustard", 420),
            ("Lavender honey", 890),
            ("Acacia honey", 790),
            ("Apricot jam", 550),
            ("Fig jam", 590),
            ("Fleur de sel de Guérande", 650),
            ("Smoked paprika", 450),
            ("Espelette pepper", 890),
            ("Herbes de Provence", 420),
            ("Saffron threads", 1990),
            ("Vanilla pods, Madagascar", 1490),
            ("Tellicherry black peppercorns", 690),
        ],
        variants: &[("small", 100), ("large", 180)],
        blurb: "Pantry staples from small producers across France and the Mediterranean.",
    },
    Family {
        slug: "baking",
        name: "Baking",
        sku: "BAK",
        items: &[
            ("Type 55 wheat flour", 290),
            ("Buckwheat flour", 390),
            ("Spelt flour", 420),
            ("Cane sugar", 320),
            ("Icing sugar", 280),
            ("Cocoa powder", 690),
            ("Almond flour", 990),
            ("Baking powder", 250),
            ("Dried yeast", 350),
            ("Dark chocolate chips", 790),
        ],
        variants: &[("500 g", 100), ("1 kg", 180)],
        blurb: "Flours and baking essentials, milled and packed in France.",
    },
    Family {
        slug: "cookware",
        name: "Cookware",
        sku: "CKW",
        items: &[
            ("Cast iron skillet", 5900),
            ("Carbon steel wok", 4900),
            ("Stainless sauté pan", 7900),
            ("Copper saucepan", 14900),
            ("Enamelled Dutch oven", 12900),
            ("Non-stick frying pan", 3900),
            ("Stockpot", 6900),
            ("Crêpe pan", 3500),
        ],
        variants: &[("20 cm", 100), ("24 cm", 125), ("28 cm", 150)],
        blurb: "Pans that last a lifetime, for gas, electric and induction hobs.",
    },
    Family {
        slug: "tableware",
        name: "Tableware",
        sku: "TAB",
        items: &[
            ("Porcelain dinner plate", 1900),
            ("Stoneware bowl", 1600),
            ("Espresso cup", 1200),
            ("Cappuccino cup", 1400),
            ("Tea mug", 1500),
            ("Wine glass", 1300),
            ("Water tumbler", 900),
            ("Linen napkin", 1100),
            ("Serving platter", 3900),
            ("Salad bowl", 3400),
        ],
        variants: &[
            ("white", 100),
            ("charcoal", 105),
            ("sage", 105),
            ("terracotta", 110),
        ],
        blurb: "Made in small workshops in Limoges, Portugal and Normandy.",
    },
    Family {
        slug: "coffee-gear",
        name: "Coffee gear",
        sku: "CGR",
        items: &[
            ("Pour-over dripper", 2900),
            ("Gooseneck kettle", 6900),
            ("Burr grinder", 12900),
            ("French press", 3900),
            ("Moka pot", 3500),
            ("Espresso tamper", 2900),
            ("Milk frother", 4500),
            ("Coffee scale", 4900),
            ("Cold brew jar", 2900),
            ("Paper filters", 690),
        ],
        variants: &[("standard", 100), ("large", 130), ("travel", 90)],
        blurb: "Tools for brewing at home the way our baristas do.",
    },
    Family {
        slug: "kitchen-tools",
        name: "Kitchen tools",
        sku: "KTL",
        items: &[
            ("Chef's knife", 8900),
            ("Paring knife", 3900),
            ("Bread knife", 5900),
            ("Oak cutting board", 4900),
            ("Balloon whisk", 1900),
            ("Silicone spatula", 1200),
            ("Olive wood spoon", 1400),
            ("Mandoline slicer", 4500),
            ("Fine grater", 2900),
            ("Pepper mill", 3900),
            ("Salad spinner", 2900),
            ("Measuring cups", 1900),
        ],
        variants: &[("classic", 100), ("professional", 160)],
        blurb: "Hand tools chosen by our cooks for everyday use.",
    },
    Family {
        slug: "storage",
        name: "Storage",
        sku: "STO",
        items: &[
            ("Glass storage jar", 900),
            ("Airtight canister", 1500),
            ("Beeswax wraps", 1800),
            ("Stainless bento box", 2900),
            ("Spice tin", 700),
        ],
        variants: &[("small", 100), ("medium", 130), ("large", 160)],
        blurb: "Keep it fresh without plastic.",
    },
    Family {
        slug: "gifts",
        name: "Gift boxes",
        sku: "GFT",
        items: &[
            ("Coffee discovery box", 3900),
            ("Tea tasting set", 3500),
            ("Chocolate assortment", 2900),
            ("Provençal pantry hamper", 6900),
            ("Baker's gift set", 4900),
        ],
        variants: &[("small", 100), ("large", 180)],
        blurb: "Ready to give, wrapped in recycled paper.",
    },
];

/// Products the demo catalogue holds.
pub fn product_count() -> usize {
    FAMILIES
        .iter()
        .map(|f| f.items.len() * f.variants.len())
        .sum()
}

/// Loads the demo catalogue unless the catalogue already has categories. Returns the number
/// of products present afterwards.
pub async fn load(state: &AppState) -> Result<usize, RepoError> {
    if !repo::list_categories(&state.pool).await?.is_empty() {
        tracing::info!("Catalogue not empty; demo data not loaded");
        let (_, total) = repo::list_products(
            &state.pool,
            &repo::ProductFilter {
                limit: 1,
                include_inactive: true,
                ..Default::default()
            },
        )
        .await?;
        return Ok(usize::try_from(total).unwrap_or_default());
    }
    let mut count = 0;
    for family in FAMILIES {
        let category = repo::create_category(
            &state.pool,
            &NewCategory {
                slug: family.slug.to_owned(),
                name: family.name.to_owned(),
            },
        )
        .await?;
        for (i, (item, base)) in family.items.iter().enumerate() {
            for (v, (variant, percent)) in family.variants.iter().enumerate() {
                // Round to a shop price ending in 0 cents.
                let price = (base * percent / 100).div_euclid(10) * 10;
                let product = NewProduct {
                    sku: format!("{}-{:03}-{}", family.sku, i + 1, (b'A' + v as u8) as char),
                    name: format!("{item}, {variant}"),
                    description: format!("{} {item}, {variant}.", family.blurb),
                    category_id: Some(category.id),
                    price_cents: price,
                    currency: "EUR".to_owned(),
                    // One product in seventeen is withdrawn, so the demo shows inactive ones.
                    active: (count + 1) % 17 != 0,
                };
                repo::create_product(&state.pool, &state.topic, &product).await?;
                count += 1;
            }
        }
    }
    state.relay_wake.notify_one();
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_catalogue_is_a_few_hundred_valid_products() {
        assert!(
            (250..=400).contains(&product_count()),
            "{}",
            product_count()
        );
        for family in FAMILIES {
            assert!(
                family
                    .slug
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '-'),
                "{}",
                family.slug
            );
            assert!(family.variants.len() <= 26);
        }
    }
}
