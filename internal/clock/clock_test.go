package clock

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestVirtualBlockUntil(t *testing.T) {
	v := NewVirtual(time.Unix(0, 0))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	armed := make(chan *Ticker, 1)
	go func() {
		tk := v.NewTicker(time.Minute)
		armed <- &tk
	}()
	if err := v.BlockUntil(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// Armed before BlockUntil returned: one Advance fires exactly one tick.
	tk := *<-armed
	defer tk.Stop()
	v.Advance(time.Minute)
	select {
	case at := <-tk.C():
		if !at.Equal(time.Unix(60, 0)) {
			t.Errorf("tick at %v, want %v", at, time.Unix(60, 0))
		}
	default:
		t.Fatal("no tick after advancing one period")
	}
	// More waiters than there will ever be: ctx's end, with a reason.
	short, cancelShort := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancelShort()
	if err := v.BlockUntil(short, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("BlockUntil(2) with one ticker = %v, want the deadline", err)
	}
}
