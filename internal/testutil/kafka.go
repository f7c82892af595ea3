package testutil

import (
	"context"

	"github.com/twmb/franz-go/pkg/kadm"
)

// DeleteRecords deletes partition p's records below offset at, as
// retention would.
func DeleteRecords(ctx context.Context, adm *kadm.Client, topic string, p int32, at int64) error {
	del := kadm.Offsets{}
	del.Add(kadm.Offset{Topic: topic, Partition: p, At: at})
	resp, err := adm.DeleteRecords(ctx, del)
	if err == nil {
		err = resp.Error()
	}
	return err
}
