export function pseudoEnglish(random: () => number, length: number): string;
