"""The fixed evaluation harness: data sources, tokenizer, split, dataloader and metric."""
