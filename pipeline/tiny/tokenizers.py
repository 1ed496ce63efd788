"""Byte-level BPE tokenizers trained in memory with the `tokenizers` library."""
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

CORPUS = [
    "Does this image show a stop sign? Answer YES or NO.",
    "Is this a stop sign? Answer YES or NO. yes no YES NO Yes No",
    "Does this image show a fiber-optic combat drone? Is this a drone?",
    "a photo of a red circle, a blue square, a cat, a dog, a car",
    "user assistant system",
] * 20


def byte_bpe(specials: list[str], vocab_size: int = 400, corpus=CORPUS) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    return tok
