//! The benchmark prompt text: the same English paragraphs the baseline scripts (llama.cpp,
//! HuggingFace transformers) tokenize, so every engine reads the same prompt.

const PARAGRAPHS: [&str; 8] = [
    "The history of the printing press begins in the middle of the fifteenth century, when Johannes Gutenberg combined movable metal type, oil-based ink and a wooden screw press into a single working system. Before that, books in Europe were copied by hand, a slow and expensive process that limited learning to a small number of monasteries, universities and wealthy households.",
    "Within fifty years, presses had spread to more than two hundred cities. Printers produced bibles, grammars, calendars, legal documents and pamphlets, and the price of a book fell so sharply that merchants and craftsmen could afford to own them. Scholars began to compare editions, correct errors and share their findings across borders far more quickly than before.",
    "Historians still debate how much the press changed society. Some argue that it made the Reformation possible, because reformers could print thousands of copies of their arguments in a few weeks. Others point out that literacy rates rose slowly, and that most people continued to learn through sermons, songs and conversation for centuries.",
    "In the kitchen, bread is one of the oldest prepared foods. A simple loaf needs only flour, water, salt and yeast, yet the results vary enormously with the type of grain, the temperature of the room and the patience of the baker. Long, cool fermentation develops flavour, while a hot oven with plenty of steam gives a crisp, shiny crust.",
    "Mountain weather can change in minutes. Hikers are advised to check the forecast, carry a map and compass, pack warm layers even in summer, and turn back when clouds gather around the summit. Many accidents happen on the way down, when people are tired and hurrying to reach the valley before dark.",
    "Modern computers store numbers in binary, using patterns of ones and zeros. Integers are represented exactly within a fixed range, but real numbers are approximated with floating point formats, which trade precision for range. Programmers who ignore rounding errors can be surprised when two values that should be equal are not.",
    "The city council met on Tuesday evening to discuss the new bus routes. Residents from the northern districts asked for more frequent service during the morning rush, while shop owners in the centre worried that fewer parking spaces would drive customers away. The council agreed to publish a revised plan next month.",
    "Bees communicate the location of flowers through a series of movements known as the waggle dance. The angle of the dance relative to vertical tells other workers the direction of the food source relative to the sun, and the duration of the waggle indicates the distance. Researchers have decoded these dances for decades.",
];

/// The paragraphs four times over, joined by spaces (well over 512 + 128 tokens).
pub fn base_text() -> String {
    let one: Vec<&str> = PARAGRAPHS.to_vec();
    let mut all = Vec::new();
    for _ in 0..4 {
        all.extend_from_slice(&one);
    }
    all.join(" ")
}
