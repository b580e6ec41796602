// Text for the tokenizer bench and tests: Zipf-distributed made-up words with English-like punctuation.

/**
 * `length` characters of made-up words (Zipf-distributed over an 800-word lexicon drawn first) with
 * English-like capitals, commas and line ends. `random` (uniform in [0, 1)) decides everything: each
 * stream has its own lexicon, so a second text has words the first never showed a tokenizer.
 */
export function pseudoEnglish(random, length) {
  const pick = (items) => items[Math.floor(random() * items.length)];
  const syllables = ['ta', 're', 'mon', 'ly', 'ex', 'pan', 'sion', 'de', 'vi', 'al', 'com', 'pu', 'ter', 'in', 'gen',
    'ous', 'pro', 'ble', 'ma', 'tic', 'un', 'der', 'stand', 'ing', 'the', 'of', 'and', 'to', 'a', 'is'];
  const lexicon = Array.from({ length: 800 }, () => {
    let word = '';
    for (let k = 1 + Math.floor(random() * 3); k > 0; k--) word += pick(syllables);
    return word;
  });
  let text = '';
  while (text.length < length) {
    const word = lexicon[Math.floor(lexicon.length * random() ** 3)];
    const roll = random();
    text += roll < 0.07 ? `${word[0].toUpperCase()}${word.slice(1)}, ` : roll < 0.12 ? `${word}.\n` : `${word} `;
  }
  return text.slice(0, length);
}
