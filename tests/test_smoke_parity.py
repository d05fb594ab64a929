from FlagEmbedding import FlagReranker

from crossrank import Reranker


def test_scores_equal_flagreranker(tiny_model_dir):
    pairs = [("中国的首都是哪里？", "北京是中国的政治中心。"), ("q", ""), ("", "abc"), ("emoji 🙂", "🚀 " * 400)]
    ref = FlagReranker(str(tiny_model_dir), use_fp16=False, devices="cpu").compute_score(pairs)
    ours = Reranker(str(tiny_model_dir), device="cpu").compute_score(pairs)
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert abs(a - b) < 1e-5
