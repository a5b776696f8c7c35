package store

import (
	"runtime"
	"sync"

	lifeboat "github.com/lifeboat-dr/lifeboat"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

type mvccKV = mvccpb.KeyValue

// parallelDecodeMin is the journal length from which decoding is spread
// over the CPUs: JSON decoding is most of the time of reading a long
// journal, and resuming a run starts with that read.
const parallelDecodeMin = 2048

// decodeRecords decodes n journal records; kv(i) gives the i-th key and value.
func decodeRecords(n int, kv func(i int) (key string, value []byte)) ([]lifeboat.Record, error) {
	out := make([]lifeboat.Record, n)
	decodeRange := func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			k, v := kv(i)
			if err := decode(opJournal, k, v, &out[i]); err != nil {
				return err
			}
		}
		return nil
	}
	workers := runtime.GOMAXPROCS(0)
	if n < parallelDecodeMin || workers == 1 {
		return out, decodeRange(0, n)
	}
	errs := make([]error, workers)
	chunk := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*chunk, min(n, (w+1)*chunk)
		if lo >= hi {
			break
		}
		wg.Go(func() { errs[w] = decodeRange(lo, hi) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func decodeKVs(kvs []*mvccKV) ([]lifeboat.Record, error) {
	return decodeRecords(len(kvs), func(i int) (string, []byte) { return string(kvs[i].Key), kvs[i].Value })
}
